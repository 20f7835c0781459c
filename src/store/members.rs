//! Members: the upsert by (channel, channel_user_id) that imports and the
//! simulator's seeding use (parsing import files is `crate::import`),
//! lookups, and the row → `Member` mapping used by audiences and dispatch.

use super::Result;
use crate::model::{Member, MemberId, NewMember, now_ms};
use rusqlite::{Connection, OptionalExtension, Row, params};

fn join_tags(tags: &[String]) -> String {
    tags.join(";")
}

fn insert_tags(conn: &Connection, id: MemberId, tags: &[String]) -> rusqlite::Result<()> {
    let mut ins =
        conn.prepare_cached("INSERT OR IGNORE INTO member_tags (tag, member_id) VALUES (?1, ?2)")?;
    for t in tags {
        ins.execute(params![t, id])?;
    }
    Ok(())
}

/// Upserts rows by (channel, channel_user_id); returns (inserted, updated).
pub fn upsert_rows(conn: &Connection, rows: &[NewMember]) -> Result<(u64, u64)> {
    let now = now_ms();
    let mut find =
        conn.prepare_cached("SELECT id FROM members WHERE channel = ?1 AND channel_user_id = ?2")?;
    let mut insert = conn.prepare_cached(
        "INSERT INTO members (channel, channel_user_id, name, locale, timezone, tags, attributes,
                              subscribed, last_interaction_at, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)",
    )?;
    let mut update = conn.prepare_cached(
        "UPDATE members SET
            name = coalesce(?2, name),
            locale = coalesce(?3, locale),
            timezone = coalesce(?4, timezone),
            tags = coalesce(?5, tags),
            attributes = coalesce(?6, attributes),
            subscribed = coalesce(?7, subscribed),
            last_interaction_at = coalesce(?8, last_interaction_at),
            updated_at = ?9
         WHERE id = ?1",
    )?;
    let mut clear_tags = conn.prepare_cached("DELETE FROM member_tags WHERE member_id = ?1")?;
    let (mut inserted, mut updated) = (0, 0);
    for r in rows {
        let attrs = r
            .attributes
            .as_ref()
            .map(|a| serde_json::Value::Object(a.clone()).to_string());
        let existing: Option<MemberId> = find
            .query_row(params![r.channel, r.channel_user_id], |row| row.get(0))
            .optional()?;
        match existing {
            None => {
                let tags = r.tags.clone().unwrap_or_default();
                insert.execute(params![
                    r.channel,
                    r.channel_user_id,
                    r.name.as_deref().unwrap_or(""),
                    r.locale.as_deref().unwrap_or("en"),
                    // None known: '' ([policy] default_timezone applies).
                    r.timezone.as_deref().unwrap_or(""),
                    join_tags(&tags),
                    attrs.as_deref().unwrap_or("{}"),
                    r.subscribed.unwrap_or(true),
                    r.last_interaction_at,
                    now
                ])?;
                insert_tags(conn, conn.last_insert_rowid(), &tags)?;
                inserted += 1;
            }
            Some(id) => {
                update.execute(params![
                    id,
                    r.name,
                    r.locale,
                    r.timezone,
                    r.tags.as_deref().map(join_tags),
                    attrs,
                    r.subscribed,
                    r.last_interaction_at,
                    now
                ])?;
                if let Some(tags) = &r.tags {
                    clear_tags.execute(params![id])?;
                    insert_tags(conn, id, tags)?;
                }
                updated += 1;
            }
        }
    }
    Ok((inserted, updated))
}

/// The columns `member_from_row` expects, in order.
pub const MEMBER_COLUMNS: &str = "m.id, m.channel, m.channel_user_id, m.name, m.locale, m.timezone, m.tags, m.attributes, m.subscribed, m.last_interaction_at";

/// Maps a row selected with [`MEMBER_COLUMNS`] (starting at column `at`).
pub fn member_from_row(row: &Row<'_>, at: usize) -> rusqlite::Result<Member> {
    // Read in place: only the pieces are copied out.
    let tags = row.get_ref(at + 6)?.as_str()?;
    let attrs = row.get_ref(at + 7)?.as_str()?;
    Ok(Member {
        id: row.get(at)?,
        channel: row.get(at + 1)?,
        channel_user_id: row.get(at + 2)?,
        name: row.get(at + 3)?,
        locale: row.get(at + 4)?,
        timezone: row.get(at + 5)?,
        tags: if tags.is_empty() {
            Vec::new()
        } else {
            tags.split(';').map(String::from).collect()
        },
        attributes: match attrs {
            "" | "{}" => serde_json::Map::new(),
            _ => match serde_json::from_str(attrs) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            },
        },
        subscribed: row.get(at + 8)?,
        last_interaction_at: row.get(at + 9)?,
    })
}

/// Members matching an audience's SQL filter (a boolean expression over
/// `members m` with its parameters), in id order after `after`: one page of
/// a walk that never holds a whole audience in memory.
pub fn page_where(
    conn: &Connection,
    filter_sql: &str,
    args: &[crate::model::SqlValue],
    after: MemberId,
    limit: usize,
) -> Result<Vec<Member>> {
    let q = format!(
        "SELECT {MEMBER_COLUMNS} FROM members m WHERE ({filter_sql}) AND m.id > ?{} ORDER BY m.id LIMIT {limit}",
        args.len() + 1
    );
    let mut stmt = conn.prepare_cached(&q)?;
    let params = args
        .iter()
        .cloned()
        .chain(std::iter::once(crate::model::SqlValue::Integer(after)));
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
        member_from_row(r, 0)
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Members matching an audience's compiled `where` (see [`page_where`]).
pub fn count_where(
    conn: &Connection,
    filter_sql: &str,
    args: &[crate::model::SqlValue],
) -> Result<u64> {
    let q = format!("SELECT count(*) FROM members m WHERE ({filter_sql})");
    let n: i64 = conn.query_row(&q, rusqlite::params_from_iter(args.iter()), |r| r.get(0))?;
    Ok(n as u64)
}

/// How many of a channel's members [`sample`] looks at: a bounded walk of
/// the (channel, channel_user_id) index, whatever the channel's size.
const SAMPLE_SCAN: u32 = 2000;

/// A subscribed member of `channel` with `locale`, among its first
/// [`SAMPLE_SCAN`] members (to show a template as such a member gets it).
pub fn sample(conn: &Connection, channel: &str, locale: &str) -> Result<Option<Member>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM (SELECT * FROM members
                 WHERE channel = ?1 AND subscribed = 1 LIMIT {SAMPLE_SCAN}) m
             WHERE m.locale = ?2 LIMIT 1"
        ))?
        .query_row(params![channel, locale], |r| member_from_row(r, 0))
        .optional()?)
}

pub fn count(conn: &Connection) -> Result<u64> {
    Ok(conn.query_row("SELECT count(*) FROM members", [], |r| r.get::<_, i64>(0))? as u64)
}

pub fn get(conn: &Connection, id: MemberId) -> Result<Option<Member>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m WHERE m.id = ?1"
        ))?
        .query_row([id], |r| member_from_row(r, 0))
        .optional()?)
}

pub fn find(conn: &Connection, channel: &str, user: &str) -> Result<Option<Member>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {MEMBER_COLUMNS} FROM members m WHERE m.channel = ?1 AND m.channel_user_id = ?2"
        ))?
        .query_row(params![channel, user], |r| member_from_row(r, 0))
        .optional()?)
}
