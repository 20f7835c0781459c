//! Tracked links in the store (schema migration 6): the key tokens are
//! signed with, the URL registered once for each (push, link), clicks and
//! previews, and what the report, the export and the recipients query read.
//!
//! Counts live on the `links` row (`clicked` unique recipients, `clicks`
//! every click, `previews`) and, per push, in `link_totals` (recipients who
//! clicked any link), moved once per batch of clicks; `link_clicks` holds
//! one row per (delivery, link) clicked under `privacy = "individual"`,
//! the only per-recipient record a click makes.

use super::Result;
use crate::model::{DeliveryId, DeliveryState, Millis, PushId, now_ms};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Links one push can track (the token has 4 bits for it).
pub const MAX_LINKS: usize = 16;

const SENT: i64 = DeliveryState::Sent as i64;
const _: () = assert!(SENT == 2);

/// A first click's interaction (state 2 = sent): fixed text, so the
/// statement cache finds it without formatting a key per click.
const INTERACT: &str = "UPDATE deliveries SET interacted_at = ?2, updated_at = ?3
  WHERE id = ?1 AND state = 2 AND interacted_at IS NULL";

/// Whether delivery `d` (over `deliveries d`) had a tracked link clicked:
/// the `clicked` outcome of `pushd recipients` (issue 19).
pub const CLICKED_SQL: &str =
    "EXISTS (SELECT 1 FROM link_clicks lc WHERE lc.push_id = d.push_id AND lc.delivery_id = d.id)";

/// How many deliveries of `push` had a tracked link clicked (by the key of
/// `link_clicks`, not a scan of the push).
pub fn clicked_deliveries(conn: &Connection, push: PushId) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT count(DISTINCT delivery_id) FROM link_clicks WHERE push_id = ?1")?
        .query_row([push], |r| r.get(0))?;
    Ok(n.max(0) as u64)
}

/// The first click of each clicked delivery of push `?1`, in delivery
/// order (the export merges it with its own walk).
pub const FIRST_CLICKS_SQL: &str = "SELECT delivery_id, min(first_at) FROM link_clicks
 WHERE push_id = ?1 GROUP BY delivery_id ORDER BY delivery_id";

/// The stored key, made from `fresh` the first time (`fresh` is ignored
/// once a key exists, so every daemon on one database signs alike).
pub fn key(conn: &Connection, fresh: &[u8]) -> Result<Vec<u8>> {
    conn.prepare_cached(
        "INSERT INTO link_key (id, key, created_at) VALUES (1, ?1, ?2) ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![fresh, now_ms()])?;
    Ok(conn
        .prepare_cached("SELECT key FROM link_key WHERE id = 1")?
        .query_row([], |r| r.get(0))?)
}

/// The push's link number of each of `urls`, registering the new ones
/// (a URL is registered once per push, whatever generation renders it).
pub fn register(conn: &Connection, push: PushId, urls: &[String]) -> Result<Vec<u8>> {
    let mut known: Vec<String> = conn
        .prepare_cached("SELECT url FROM links WHERE push_id = ?1 ORDER BY link")?
        .query_map([push], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut out = Vec::with_capacity(urls.len());
    for url in urls {
        let link = match known.iter().position(|k| k == url) {
            Some(i) => i,
            None => {
                if known.len() >= MAX_LINKS {
                    return Err(super::StoreError::Invalid(format!(
                        "push {push} already tracks {MAX_LINKS} links, the most one push can; \
                         {url:?} cannot be added (the template changed under a running push?)"
                    )));
                }
                conn.prepare_cached(
                    "INSERT INTO links (push_id, link, url, created_at) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![push, known.len() as i64, url, now_ms()])?;
                known.push(url.clone());
                known.len() - 1
            }
        };
        out.push(link as u8);
    }
    Ok(out)
}

/// A delivery's push, send time and the URL of its push's link `?2`
/// (NULL: no such link). A correlated subquery, not a join: SQLite
/// re-prepares the join form on every run (its plan depends on the bound
/// values), which was half of the writer's time per click.
const LINK_OF_DELIVERY: &str = "SELECT d.push_id, d.sent_at,
        (SELECT l.url FROM links l WHERE l.push_id = d.push_id AND l.link = ?2)
   FROM deliveries d WHERE d.id = ?1";

/// (push, sent_at, URL) of `link` of `delivery`; None when either is unknown.
fn link_of(
    conn: &Connection,
    delivery: DeliveryId,
    link: u8,
) -> Result<Option<(PushId, Option<Millis>, String)>> {
    let found: Option<(PushId, Option<Millis>, Option<String>)> = conn
        .prepare_cached(LINK_OF_DELIVERY)?
        .query_row(params![delivery, link], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    Ok(found.and_then(|(push, sent_at, url)| Some((push, sent_at, url?))))
}

/// The URL registered for `link` of the push `delivery` belongs to.
pub fn url(conn: &Connection, delivery: DeliveryId, link: u8) -> Result<Option<String>> {
    Ok(link_of(conn, delivery, link)?.map(|(_, _, url)| url))
}

/// One request for a tracked link whose token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub delivery: DeliveryId,
    pub link: u8,
    pub at: Millis,
    /// The request said it is a preview fetch (HEAD, a fetcher's User-Agent).
    pub fetch: bool,
    /// `privacy = "individual"`: record who clicked, as an interaction.
    pub per_recipient: bool,
    /// Requests this soon after the send are previews.
    pub preview_window_ms: i64,
}

/// Counter moves of one batch, per (push, link).
#[derive(Default)]
struct Moves {
    links: HashMap<(PushId, u8), [i64; 3]>,
    clicked: HashMap<PushId, i64>,
}

/// Records a batch of clicks; for each, the URL to redirect to, or None
/// when no such link exists (nothing is recorded for it).
pub fn record(conn: &Connection, clicks: &[Click]) -> Result<Vec<Option<String>>> {
    let mut moves = Moves::default();
    let mut out = Vec::with_capacity(clicks.len());
    for c in clicks {
        out.push(record_one(conn, c, &mut moves)?);
    }
    for ((push, link), [clicked, total, previews]) in moves.links {
        conn.prepare_cached(
            "UPDATE links SET clicked = clicked + ?3, clicks = clicks + ?4, previews = previews + ?5
              WHERE push_id = ?1 AND link = ?2",
        )?
        .execute(params![push, link, clicked, total, previews])?;
    }
    for (push, n) in moves.clicked {
        conn.prepare_cached(
            "INSERT INTO link_totals (push_id, clicked) VALUES (?1, ?2)
             ON CONFLICT (push_id) DO UPDATE SET clicked = clicked + excluded.clicked",
        )?
        .execute(params![push, n])?;
    }
    Ok(out)
}

fn record_one(conn: &Connection, c: &Click, moves: &mut Moves) -> Result<Option<String>> {
    let Some((push, sent_at, url)) = link_of(conn, c.delivery, c.link)? else {
        return Ok(None);
    };
    let counts = moves.links.entry((push, c.link)).or_default();
    // Not sent yet (the platform fetches while we record the send), or
    // sent moments ago: no person clicks that fast.
    let preview = c.fetch || sent_at.is_none_or(|t| c.at < t + c.preview_window_ms);
    if preview {
        counts[2] += 1;
        return Ok(Some(url));
    }
    counts[1] += 1;
    if !c.per_recipient {
        return Ok(Some(url));
    }
    // The first click of this link by this recipient inserts; a repeat
    // counts on the row. (Two plain statements: an upsert with RETURNING
    // builds a temporary table for every click.)
    let first = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO link_clicks (push_id, delivery_id, link, first_at, last_at, n)
             VALUES (?1, ?2, ?3, ?4, ?4, 1)",
        )?
        .execute(params![push, c.delivery, c.link, c.at])?
        == 1;
    if !first {
        conn.prepare_cached(
            "UPDATE link_clicks SET n = n + 1, last_at = max(last_at, ?4)
              WHERE push_id = ?1 AND delivery_id = ?2 AND link = ?3",
        )?
        .execute(params![push, c.delivery, c.link, c.at])?;
        return Ok(Some(url));
    }
    counts[0] += 1;
    let links_clicked: i64 = conn
        .prepare_cached("SELECT count(*) FROM link_clicks WHERE push_id = ?1 AND delivery_id = ?2")?
        .query_row(params![push, c.delivery], |r| r.get(0))?;
    if links_clicked == 1 {
        *moves.clicked.entry(push).or_default() += 1;
        // An interaction, exactly as a button reply is (the counters'
        // trigger moves the recipient's slice); never on anything but a
        // sent message, never moved back.
        conn.prepare_cached(INTERACT)?
            .execute(params![c.delivery, c.at, now_ms()])?;
    }
    Ok(Some(url))
}

/// One tracked link of a push, as the report shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStats {
    pub url: String,
    /// Recipients who clicked it (`privacy = "individual"` clicks).
    pub clicks: u64,
    /// Every click on it, repeats and anonymous clicks included.
    pub clicks_total: u64,
    /// Preview fetches (HEAD, fetchers, within the preview window).
    pub previews: u64,
}

/// Recipients of `push` who clicked any tracked link, and its links in
/// link order.
pub fn stats(conn: &Connection, push: PushId) -> Result<(u64, Vec<LinkStats>)> {
    let clicked: i64 = conn
        .prepare_cached("SELECT clicked FROM link_totals WHERE push_id = ?1")?
        .query_row([push], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    let links = conn
        .prepare_cached(
            "SELECT url, clicked, clicks, previews FROM links WHERE push_id = ?1 ORDER BY link",
        )?
        .query_map([push], |r| {
            Ok(LinkStats {
                url: r.get(0)?,
                clicks: r.get::<_, i64>(1)?.max(0) as u64,
                clicks_total: r.get::<_, i64>(2)?.max(0) as u64,
                previews: r.get::<_, i64>(3)?.max(0) as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((clicked.max(0) as u64, links))
}

/// Deliveries of `push` that clicked a tracked link, with their first
/// click, after delivery `after`, in delivery order (for `recipients
/// --outcome clicked`).
pub fn clicked(
    conn: &Connection,
    push: PushId,
    after: DeliveryId,
    limit: u32,
) -> Result<Vec<(DeliveryId, Millis)>> {
    Ok(conn
        .prepare_cached(
            "SELECT delivery_id, min(first_at) FROM link_clicks
              WHERE push_id = ?1 AND delivery_id > ?2
              GROUP BY delivery_id ORDER BY delivery_id LIMIT ?3",
        )?
        .query_map(params![push, after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// Push 7: delivery 5 sent at 1000, delivery 6 still pending; one link.
    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("l.db")).unwrap();
        store
            .write_blocking(|c| {
                c.execute_batch(&format!(
                    "INSERT INTO deliveries (id, push_id, member_id, state, channel, attempts, provider_message_id, sent_at)
                     VALUES (5, 7, 3, {SENT}, 'wa', 1, 'wamid.1', 1000), (6, 7, 4, 0, NULL, 0, NULL, NULL);
                     INSERT INTO push_counts VALUES (7, {SENT}, 0, 0, 1), (7, 0, 0, 0, 1);"
                ))?;
                register(c, 7, &["https://a.example/".into()])?;
                Ok(())
            })
            .unwrap();
        (dir, store)
    }

    fn click(delivery: i64, at: Millis) -> Click {
        Click {
            delivery,
            link: 0,
            at,
            fetch: false,
            per_recipient: true,
            preview_window_ms: 2000,
        }
    }

    #[test]
    fn registration_is_once_per_url_and_bounded() {
        let (_dir, store) = store();
        let got = store
            .write_blocking(|c| {
                let a = register(
                    c,
                    7,
                    &["https://b.example/".into(), "https://a.example/".into()],
                )?;
                let many: Vec<String> = (0..20).map(|i| format!("https://{i}.example/")).collect();
                let e = register(c, 8, &many).unwrap_err().to_string();
                Ok((a, e))
            })
            .unwrap();
        assert_eq!(got.0, vec![1, 0]);
        assert!(got.1.contains("16 links"), "{}", got.1);
        store.close();
    }

    #[test]
    fn clicks_previews_and_unknown_links() {
        let (_dir, store) = store();
        let clicks = vec![
            click(5, 1500), // within the window: preview
            Click {
                fetch: true,
                ..click(5, 9000)
            }, // a fetcher
            click(6, 9000), // not sent yet: preview
            click(5, 9000), // the first click
            click(5, 9500), // again: total only
            Click {
                link: 1,
                ..click(5, 9000)
            }, // no link 1
            click(99, 9000), // no such delivery
        ];
        let urls = store.write_blocking(move |c| record(c, &clicks)).unwrap();
        let a = Some("https://a.example/".to_string());
        assert_eq!(
            urls,
            vec![a.clone(), a.clone(), a.clone(), a.clone(), a, None, None]
        );
        let (recipients, links) = store.read_blocking(|c| stats(c, 7)).unwrap();
        assert_eq!(recipients, 1);
        assert_eq!(
            links,
            vec![LinkStats {
                url: "https://a.example/".into(),
                clicks: 1,
                clicks_total: 2,
                previews: 3
            }]
        );
        let (interacted, first): (Option<i64>, Vec<(i64, i64)>) = store
            .read_blocking(|c| {
                let i = c.query_row(
                    "SELECT interacted_at FROM deliveries WHERE id = 5",
                    [],
                    |r| r.get(0),
                )?;
                Ok((i, clicked(c, 7, 0, 10)?))
            })
            .unwrap();
        assert_eq!(interacted, Some(9000));
        assert_eq!(first, vec![(5, 9000)]);
        store.close();
    }
}
