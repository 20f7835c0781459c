//! The audit trail: who changed what, when (reloads included, good or bad).

use super::{Result, Store};
use crate::model::{Millis, now_ms};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub at: Millis,
    /// Peer uid over the socket; `None` when the daemon acted on its own
    /// (file-watch reload, startup).
    pub uid: Option<u32>,
    /// Who acted when it was not a socket peer: `panel:<session> (role)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub ok: bool,
    pub detail: Option<String>,
}

pub fn record(
    conn: &Connection,
    uid: Option<u32>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<&str>,
) -> Result<i64> {
    record_by(conn, uid, None, action, target, ok, detail)
}

/// [`record`] naming an actor besides (or instead of) a uid.
pub fn record_by(
    conn: &Connection,
    uid: Option<u32>,
    actor: Option<&str>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<&str>,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO audit (at, uid, actor, action, target, ok, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![now_ms(), uid, actor, action, target, ok, detail])?;
    Ok(conn.last_insert_rowid())
}

/// Longest `detail` kept (a reload error can list many problems).
const MAX_DETAIL: usize = 2000;

/// Appends to the audit trail in its own write. A failure to record is
/// logged, not returned: the action itself already happened.
pub async fn log(
    store: &Store,
    uid: Option<u32>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<String>,
) {
    log_by(store, uid, None, action, target, ok, detail).await
}

/// [`log`] naming an actor besides (or instead of) a uid.
pub async fn log_by(
    store: &Store,
    uid: Option<u32>,
    actor: Option<&str>,
    action: &str,
    target: Option<&str>,
    ok: bool,
    detail: Option<String>,
) {
    let (action, target) = (action.to_string(), target.map(String::from));
    let actor = actor.map(String::from);
    let detail = detail.map(|d| crate::util::truncate(&d, MAX_DETAIL));
    let r = store
        .write(move |c| {
            record_by(
                c,
                uid,
                actor.as_deref(),
                &action,
                target.as_deref(),
                ok,
                detail.as_deref(),
            )
        })
        .await;
    if let Err(e) = r {
        tracing::error!(error = %e, "cannot write the audit trail");
    }
}

/// Whose entries an audit listing keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActorFilter {
    /// A socket peer's uid.
    Uid(u32),
    /// The daemon itself (file-watch reloads, start-up): no uid, no actor.
    Daemon,
    /// Actors named this way or starting so: `panel` for every panel
    /// session, `panel:3f2a` for one.
    Named(String),
}

impl ActorFilter {
    /// `1000` or `uid 1000`, `daemon`, or an actor's name (or its start).
    pub fn parse(text: &str) -> Option<ActorFilter> {
        let t = text.trim();
        if t.is_empty() {
            return None;
        }
        let digits = t.strip_prefix("uid").map(str::trim).unwrap_or(t);
        if let Ok(uid) = digits.parse::<u32>() {
            return Some(ActorFilter::Uid(uid));
        }
        Some(if t.eq_ignore_ascii_case("daemon") {
            ActorFilter::Daemon
        } else {
            ActorFilter::Named(t.to_string())
        })
    }
}

/// Which entries of the audit trail, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Only this action (or its sub-actions: "push" matches "push.create").
    pub action: Option<String>,
    pub actor: Option<ActorFilter>,
    /// Only entries older than this id (the keyset cursor of the next page).
    pub before: Option<i64>,
}

/// Newest first: the first `limit` entries matching `q`, walked down the
/// primary key from `q.before` (keyset; never OFFSET).
pub fn list(conn: &Connection, limit: u32, q: &Query) -> Result<Vec<AuditEntry>> {
    let (uid, daemon, named) = match &q.actor {
        None => (None, false, None),
        Some(ActorFilter::Uid(u)) => (Some(*u), false, None),
        Some(ActorFilter::Daemon) => (None, true, None),
        Some(ActorFilter::Named(n)) => (None, false, Some(n.as_str())),
    };
    let mut stmt = conn.prepare_cached(
        "SELECT id, at, uid, action, target, ok, detail, actor FROM audit
         WHERE id < ?3
           AND (?1 IS NULL OR action = ?1 OR action LIKE ?1 || '.%')
           AND (?4 IS NULL OR uid = ?4)
           AND (?5 = 0 OR (uid IS NULL AND actor IS NULL))
           AND (?6 IS NULL OR actor = ?6 OR substr(actor, 1, length(?6)) = ?6)
         ORDER BY id DESC LIMIT ?2",
    )?;
    let before = q.before.unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![q.action, limit, before, uid, daemon, named], |r| {
        Ok(AuditEntry {
            id: r.get(0)?,
            at: r.get(1)?,
            uid: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            ok: r.get(5)?,
            detail: r.get(6)?,
            actor: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actor_filters_read_as_the_listing_names_actors() {
        assert_eq!(ActorFilter::parse("1000"), Some(ActorFilter::Uid(1000)));
        assert_eq!(ActorFilter::parse("uid 1000"), Some(ActorFilter::Uid(1000)));
        assert_eq!(ActorFilter::parse(" daemon "), Some(ActorFilter::Daemon));
        assert_eq!(
            ActorFilter::parse("panel:3f"),
            Some(ActorFilter::Named("panel:3f".into()))
        );
        assert_eq!(ActorFilter::parse("  "), None);
    }

    #[test]
    fn pages_walk_down_by_id_with_every_filter() {
        let mut c = Connection::open_in_memory().unwrap();
        crate::store::schema::migrate(&mut c).unwrap();
        for i in 0..5 {
            record(
                &c,
                Some(1000),
                "push.create",
                Some(&format!("p{i}")),
                true,
                None,
            )
            .unwrap();
            record_by(
                &c,
                None,
                Some("panel:ab12 (admin)"),
                "push.pause",
                None,
                true,
                None,
            )
            .unwrap();
            record(&c, None, "reload.scripts", None, i % 2 == 0, None).unwrap();
        }
        let ids = |q: &Query, limit| -> Vec<i64> {
            list(&c, limit, q).unwrap().iter().map(|e| e.id).collect()
        };
        let all = ids(&Query::default(), 100);
        assert_eq!(all.len(), 15);
        assert!(all.windows(2).all(|w| w[0] > w[1]));
        let first = ids(&Query::default(), 4);
        let next = ids(
            &Query {
                before: first.last().copied(),
                ..Query::default()
            },
            4,
        );
        assert_eq!([first, next].concat(), all[..8].to_vec());
        let by = |actor: &str| Query {
            actor: ActorFilter::parse(actor),
            ..Query::default()
        };
        assert_eq!(ids(&by("1000"), 100).len(), 5);
        assert_eq!(ids(&by("panel"), 100).len(), 5);
        assert_eq!(ids(&by("panel:ab12"), 100).len(), 5);
        assert_eq!(ids(&by("panel:zz"), 100).len(), 0);
        assert_eq!(ids(&by("daemon"), 100).len(), 5);
        let q = Query {
            action: Some("push".into()),
            actor: ActorFilter::parse("uid 1000"),
            before: None,
        };
        assert_eq!(ids(&q, 100).len(), 5);
    }
}
