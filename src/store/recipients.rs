//! The recipients of a push, filtered by outcome (the report's slices),
//! channel, locale and error, one page at a time by delivery id (keyset,
//! never OFFSET), each with its timeline; the same filter saves them as an
//! audience. Every outcome is walked through an index that holds it — the
//! failed and skipped partial indexes, the read and interacted ones, or the
//! push's own for the rest — and counted from the push's counters or an
//! index, never by scanning.

use super::audiences::{self, AudienceRow};
use super::members::{MEMBER_COLUMNS, member_from_row};
use super::pushes;
use super::{Result, StoreError};
use crate::model::{DeliveryId, DeliveryState, Member, Millis, PushId, now_ms};
use rusqlite::{Connection, params_from_iter, types::Value};

/// The report's outcomes, as filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    ReadAndInteracted,
    ReadOnly,
    InteractedOnly,
    NotReadOrInteracted,
    SentFail,
    Skipped,
    Cancelled,
    /// Clicked a tracked link (privacy individual): beside the slices.
    Clicked,
}

impl Outcome {
    pub const ALL: [Outcome; 8] = [
        Outcome::ReadAndInteracted,
        Outcome::ReadOnly,
        Outcome::InteractedOnly,
        Outcome::NotReadOrInteracted,
        Outcome::SentFail,
        Outcome::Skipped,
        Outcome::Cancelled,
        Outcome::Clicked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::ReadAndInteracted => "read_and_interacted",
            Outcome::ReadOnly => "read_only",
            Outcome::InteractedOnly => "interacted_only",
            Outcome::NotReadOrInteracted => "not_read_or_interacted",
            Outcome::SentFail => "sent_fail",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
            Outcome::Clicked => "clicked",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The index that holds this outcome's rows, and the condition.
    fn access(self) -> (&'static str, String) {
        let (sent, failed) = (DeliveryState::Sent as i64, DeliveryState::Failed as i64);
        let (skipped, cancelled) = (
            DeliveryState::Skipped as i64,
            DeliveryState::Cancelled as i64,
        );
        match self {
            Outcome::ReadAndInteracted => (
                "deliveries_read",
                format!(
                    "d.state = {sent} AND d.read_at IS NOT NULL AND d.interacted_at IS NOT NULL"
                ),
            ),
            Outcome::ReadOnly => (
                "deliveries_read",
                format!("d.state = {sent} AND d.read_at IS NOT NULL AND d.interacted_at IS NULL"),
            ),
            Outcome::InteractedOnly => (
                "deliveries_interacted",
                format!("d.state = {sent} AND d.read_at IS NULL AND d.interacted_at IS NOT NULL"),
            ),
            Outcome::NotReadOrInteracted => (
                "deliveries_push",
                format!("d.state = {sent} AND d.read_at IS NULL AND d.interacted_at IS NULL"),
            ),
            Outcome::SentFail => ("deliveries_failed", format!("d.state = {failed}")),
            Outcome::Skipped => ("deliveries_skipped", format!("d.state = {skipped}")),
            Outcome::Cancelled => ("deliveries_push", format!("d.state = {cancelled}")),
            // A click is an interaction: clicked rows are among the
            // interacted ones.
            Outcome::Clicked => (
                "deliveries_interacted",
                format!(
                    "d.state = {sent} AND d.interacted_at IS NOT NULL AND {}",
                    super::links::CLICKED_SQL
                ),
            ),
        }
    }
}

/// Which recipients of a push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub outcome: Option<Outcome>,
    /// The channel instance the recipient was (or would be) sent through.
    pub channel: Option<String>,
    pub locale: Option<String>,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
    /// The A/B variant it was (or will be) sent.
    pub variant: Option<String>,
    /// Only failures worth retrying as they are (transient, rate limited,
    /// interrupted): a retry audience's `--only transient`.
    pub retryable_only: bool,
}

/// The failure classes a retry can cure without a change.
const RETRYABLE: &str = "('transient', 'rate_limited', 'interrupted')";

impl Filter {
    /// `FROM … WHERE …` over `deliveries d JOIN members m`, with its
    /// parameters after the push id (`?1`).
    fn sql_from_where(&self) -> (String, Vec<Value>) {
        let (mut index, mut cond) = match self.outcome {
            Some(o) => o.access(),
            None => ("deliveries_push", "1".to_string()),
        };
        // Failures in delivery order, unless the error columns narrow them.
        if self.outcome == Some(Outcome::SentFail)
            && self.error_class.is_none()
            && self.error_code.is_none()
        {
            index = "deliveries_failed_order";
        }
        let mut args = Vec::new();
        let mut add = |sql: &str, v: &Option<String>, cond: &mut String| {
            if let Some(v) = v {
                args.push(Value::Text(v.clone()));
                cond.push_str(&format!(" AND {sql} = ?{}", args.len() + 1));
            }
        };
        add("coalesce(d.channel, m.channel)", &self.channel, &mut cond);
        add("m.locale", &self.locale, &mut cond);
        add("d.error_class", &self.error_class, &mut cond);
        add("d.error_code", &self.error_code, &mut cond);
        // (`holdout`: the control group, whose rows carry no variant.)
        add(
            &format!(
                "coalesce(d.variant, CASE WHEN d.skip_reason = '{h}' THEN '{h}' END)",
                h = crate::variants::HOLDOUT
            ),
            &self.variant,
            &mut cond,
        );
        if self.retryable_only {
            cond.push_str(&format!(" AND d.error_class IN {RETRYABLE}"));
        }
        (
            format!(
                "FROM deliveries d INDEXED BY {index} JOIN members m ON m.id = d.member_id
                 WHERE d.push_id = ?1 AND {cond}"
            ),
            args,
        )
    }

    /// Only an outcome (and error class/code, on failures): countable from
    /// the counters or the failed index.
    fn countable(&self) -> bool {
        self.channel.is_none()
            && self.locale.is_none()
            && self.variant.is_none()
            && (self.outcome == Some(Outcome::SentFail)
                || (self.error_class.is_none()
                    && self.error_code.is_none()
                    && !self.retryable_only))
    }

    /// As saved with an audience (its lineage), e.g. `channel=wa locale=en`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (k, v) in [
            ("channel", &self.channel),
            ("locale", &self.locale),
            ("error_class", &self.error_class),
            ("error_code", &self.error_code),
            ("variant", &self.variant),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(" ")
    }
}

/// One recipient with its timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientRow {
    pub delivery_id: DeliveryId,
    pub member: Member,
    /// The channel it was sent through (or its own, before a send).
    pub channel: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub sending_at: Option<Millis>,
    pub sent_at: Option<Millis>,
    pub delivered_at: Option<Millis>,
    pub read_at: Option<Millis>,
    pub interacted_at: Option<Millis>,
    /// What the interaction carried (the reply text or button payload), as
    /// the message log recorded it.
    pub interaction: Option<String>,
    pub failed_at: Option<Millis>,
    pub error_class: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub skip_reason: Option<String>,
    /// The A/B variant it was (or will be) sent.
    pub variant: Option<String>,
}

impl RecipientRow {
    /// The report slice (or outside-the-pie outcome) this recipient is in;
    /// None while it is still pending or being sent.
    pub fn outcome(&self) -> Option<Outcome> {
        Some(match self.state {
            DeliveryState::Sent => match (self.read_at.is_some(), self.interacted_at.is_some()) {
                (true, true) => Outcome::ReadAndInteracted,
                (true, false) => Outcome::ReadOnly,
                (false, true) => Outcome::InteractedOnly,
                (false, false) => Outcome::NotReadOrInteracted,
            },
            DeliveryState::Failed => Outcome::SentFail,
            DeliveryState::Skipped => Outcome::Skipped,
            DeliveryState::Cancelled => Outcome::Cancelled,
            DeliveryState::Pending | DeliveryState::Sending => return None,
        })
    }
}

/// The next `limit` recipients of `push` after delivery `after`, in
/// delivery order.
pub fn page(
    conn: &Connection,
    push: PushId,
    filter: &Filter,
    after: DeliveryId,
    limit: u32,
) -> Result<Vec<RecipientRow>> {
    let (from_where, args) = filter.sql_from_where();
    let n = args.len();
    let sql = format!(
        "SELECT d.id, coalesce(d.channel, m.channel), {state}, d.attempts, d.sending_at, d.sent_at,
                d.delivered_at, d.read_at, d.interacted_at, d.failed_at, d.error_class, d.error_code,
                d.error_message, d.skip_reason,
                (SELECT e.summary FROM events e INDEXED BY events_member
                  WHERE e.member_id = d.member_id AND e.delivery_id = d.id AND e.kind IN ('button', 'message')
                  ORDER BY e.at LIMIT 1),
                d.variant, {MEMBER_COLUMNS}
         {from_where} AND d.id > ?{} ORDER BY d.id LIMIT ?{}",
        n + 2,
        n + 3,
        state = super::deliveries::STATE_SQL,
    );
    let mut params: Vec<Value> = vec![Value::Integer(push)];
    params.extend(args);
    params.push(Value::Integer(after));
    params.push(Value::Integer(limit as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(params), |r| {
        let state: i64 = r.get(2)?;
        Ok(RecipientRow {
            delivery_id: r.get(0)?,
            channel: r.get(1)?,
            state: DeliveryState::from_code(state).unwrap_or(DeliveryState::Pending),
            attempts: r.get(3)?,
            sending_at: r.get(4)?,
            sent_at: r.get(5)?,
            delivered_at: r.get(6)?,
            read_at: r.get(7)?,
            interacted_at: r.get(8)?,
            failed_at: r.get(9)?,
            error_class: r.get(10)?,
            error_code: r.get(11)?,
            error_message: r.get(12)?,
            skip_reason: r.get(13)?,
            interaction: r.get(14)?,
            variant: r.get(15)?,
            member: member_from_row(r, 16)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// How many recipients match, when the counters or an index can tell
/// without scanning the push (None otherwise: a channel or locale filter).
pub fn count(conn: &Connection, push: PushId, filter: &Filter) -> Result<Option<u64>> {
    if !filter.countable() {
        return Ok(None);
    }
    if filter.outcome == Some(Outcome::SentFail)
        && (filter.error_class.is_some() || filter.error_code.is_some() || filter.retryable_only)
    {
        let (from_where, args) = filter.sql_from_where();
        let mut params: Vec<Value> = vec![Value::Integer(push)];
        params.extend(args);
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) {from_where}"),
            params_from_iter(params),
            |r| r.get(0),
        )?;
        return Ok(Some(n as u64));
    }
    let c = pushes::counts(conn, push)?;
    Ok(Some(match filter.outcome {
        None => c.total(),
        Some(Outcome::ReadAndInteracted) => c.read_and_interacted,
        Some(Outcome::ReadOnly) => c.read_only,
        Some(Outcome::InteractedOnly) => c.interacted_only,
        Some(Outcome::NotReadOrInteracted) => c.not_read_or_interacted,
        Some(Outcome::SentFail) => c.failed,
        Some(Outcome::Skipped) => c.skipped,
        Some(Outcome::Cancelled) => c.cancelled,
        Some(Outcome::Clicked) => super::links::clicked_deliveries(conn, push)?,
    }))
}

/// Saves the members `filter` selects from `push` as a static audience
/// named `name`, linked to the push (lineage: outcome and filters), minus
/// members who have unsubscribed since.
pub fn save_audience(
    conn: &Connection,
    push: PushId,
    filter: &Filter,
    name: &str,
    uid: Option<u32>,
) -> Result<AudienceRow> {
    if audiences::find(conn, name)?.is_some() {
        return Err(StoreError::Invalid(format!(
            "an audience named {name:?} already exists; pick another --name"
        )));
    }
    let outcome = filter.outcome.map(Outcome::as_str);
    let described = filter.describe();
    let only_class = filter.retryable_only.then_some("transient");
    conn.prepare_cached(
        "INSERT INTO audiences (name, source_push_id, only_class, outcome, filter, created_at, created_by)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![
        name,
        push,
        only_class,
        outcome,
        (!described.is_empty()).then_some(described),
        now_ms(),
        uid
    ])?;
    let audience = conn.last_insert_rowid();
    let (from_where, args) = filter.sql_from_where();
    let n = args.len();
    let mut params: Vec<Value> = vec![Value::Integer(push)];
    params.extend(args);
    params.push(Value::Integer(audience));
    conn.execute(
        &format!(
            "INSERT OR IGNORE INTO audience_members (audience_id, member_id)
             SELECT ?{}, d.member_id {from_where} AND m.subscribed = 1",
            n + 2
        ),
        params_from_iter(params),
    )?;
    audiences::find(conn, name)?
        .ok_or_else(|| StoreError::Sqlite("audience vanished after insert".into()))
}

/// Which failures a retry audience takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryScope {
    AllFailed,
    /// Only failures worth retrying as they are (transient, rate limited, interrupted).
    Transient,
}

/// A static audience of `push`'s failed recipients (all, or only those
/// worth retrying as they are), minus members who have unsubscribed since:
/// [`save_audience`] with the outcome `sent_fail`. `name` must
/// be new (and is checked against script audiences by the caller).
pub fn create_retry(
    conn: &Connection,
    push: PushId,
    name: &str,
    scope: RetryScope,
    uid: Option<u32>,
) -> Result<AudienceRow> {
    let filter = Filter {
        outcome: Some(Outcome::SentFail),
        retryable_only: scope == RetryScope::Transient,
        ..Default::default()
    };
    save_audience(conn, push, &filter, name, uid)
}
