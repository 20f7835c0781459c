//! Schema migrations, versioned in the database (`PRAGMA user_version`).
//! Append new migrations; never edit one that has shipped.

use rusqlite::Connection;

/// Delivery states are the integer codes of `model::DeliveryState`
/// (0 pending, 1 sending, 2 sent, 3 failed, 4 skipped, 5 cancelled).
///
/// `push_counts` holds, per push, how many deliveries sit in each
/// (state, read, interacted) cell, with pending and sending counted together
/// as state 0. Triggers keep it exact on every UPDATE and DELETE but the
/// send path's sending → sent, which its batched UPDATE counts itself
/// (migration 2); bulk INSERTs (audience resolution) add their count explicitly, which
/// is much cheaper than a trigger per row. Reports read these few rows instead
/// of scanning a million deliveries.
///
/// Public so the upgrade tests can build a database at every earlier
/// version: `MIGRATIONS[..k]` is the schema as version k shipped it.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema
    r#"
CREATE TABLE members (
    id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    channel_user_id TEXT NOT NULL,
    name TEXT NOT NULL DEFAULT '',
    locale TEXT NOT NULL DEFAULT 'en',
    timezone TEXT NOT NULL DEFAULT 'UTC',
    tags TEXT NOT NULL DEFAULT '',          -- tags joined with ';' (also in member_tags, indexed)
    attributes TEXT NOT NULL DEFAULT '{}',  -- JSON object
    subscribed INTEGER NOT NULL DEFAULT 1,
    last_interaction_at INTEGER,            -- ms; last inbound message (service window)
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (channel, channel_user_id)
);
CREATE TABLE member_tags (
    tag TEXT NOT NULL,
    member_id INTEGER NOT NULL,
    PRIMARY KEY (tag, member_id)
) WITHOUT ROWID;
CREATE INDEX member_tags_member ON member_tags(member_id);

CREATE TABLE audiences (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    source_push_id INTEGER,                 -- retry audiences: the push they retry
    only_class TEXT,                        -- e.g. 'transient' when built with --only
    created_at INTEGER NOT NULL,
    created_by INTEGER
);
CREATE TABLE audience_members (
    audience_id INTEGER NOT NULL,
    member_id INTEGER NOT NULL,
    PRIMARY KEY (audience_id, member_id)
) WITHOUT ROWID;

CREATE TABLE pushes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    origin TEXT NOT NULL,                   -- 'script' | 'cli'
    audience TEXT NOT NULL,
    template TEXT NOT NULL,
    status TEXT NOT NULL,                   -- scheduled|running|paused|completed|cancelled
    status_reason TEXT,
    start_at INTEGER NOT NULL,
    rate_per_minute INTEGER,
    batch_size INTEGER,
    batch_every_ms INTEGER,
    window_from TEXT,
    window_to TEXT,
    generation INTEGER,                     -- script generation pinned at start
    script_hash TEXT,
    retry_of INTEGER,
    resolved INTEGER NOT NULL DEFAULT 0,    -- audience frozen into deliveries
    created_at INTEGER NOT NULL,
    created_by INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX pushes_status ON pushes(status, start_at);

CREATE TABLE deliveries (
    id INTEGER PRIMARY KEY,
    push_id INTEGER NOT NULL,
    member_id INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0,
    channel TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    provider_message_id TEXT,
    error_class TEXT,
    error_code TEXT,
    error_message TEXT,
    skip_reason TEXT,
    sending_at INTEGER,
    sent_at INTEGER,
    failed_at INTEGER,
    delivered_at INTEGER,
    read_at INTEGER,
    interacted_at INTEGER,
    updated_at INTEGER
);
CREATE INDEX deliveries_push_state ON deliveries(push_id, state, id);
CREATE INDEX deliveries_member ON deliveries(member_id, sent_at);
CREATE INDEX deliveries_provider ON deliveries(provider_message_id) WHERE provider_message_id IS NOT NULL;

CREATE TABLE push_counts (
    push_id INTEGER NOT NULL,
    state INTEGER NOT NULL,
    rd INTEGER NOT NULL,
    ia INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (push_id, state, rd, ia)
) WITHOUT ROWID;

-- Counted cells lump `pending` and `sending` together (cell state 0): the
-- pending → sending → pending moves of every send and retry then fire no
-- trigger at all, which halves the counter work on the send path.
CREATE TRIGGER deliveries_count_update AFTER UPDATE OF state, read_at, interacted_at ON deliveries
WHEN (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END) IS NOT (CASE WHEN NEW.state <= 1 THEN 0 ELSE NEW.state END)
  OR (OLD.read_at IS NULL) IS NOT (NEW.read_at IS NULL)
  OR (OLD.interacted_at IS NULL) IS NOT (NEW.interacted_at IS NULL)
BEGIN
    UPDATE push_counts SET n = n - 1
     WHERE push_id = OLD.push_id AND state = (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END)
       AND rd = (OLD.read_at IS NOT NULL) AND ia = (OLD.interacted_at IS NOT NULL);
    INSERT INTO push_counts (push_id, state, rd, ia, n)
    VALUES (NEW.push_id, CASE WHEN NEW.state <= 1 THEN 0 ELSE NEW.state END,
            NEW.read_at IS NOT NULL, NEW.interacted_at IS NOT NULL, 1)
    ON CONFLICT (push_id, state, rd, ia) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER deliveries_count_delete AFTER DELETE ON deliveries
BEGIN
    UPDATE push_counts SET n = n - 1
     WHERE push_id = OLD.push_id AND state = (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END)
       AND rd = (OLD.read_at IS NOT NULL) AND ia = (OLD.interacted_at IS NOT NULL);
END;

CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    dedupe_key TEXT,                        -- platform's id for the event, when it has one
    member_id INTEGER,
    delivery_id INTEGER,
    push_id INTEGER,
    summary TEXT,
    raw TEXT
);
CREATE UNIQUE INDEX events_dedupe ON events(channel, dedupe_key, kind) WHERE dedupe_key IS NOT NULL;
CREATE INDEX events_at ON events(at);
CREATE INDEX events_member ON events(member_id, at);
CREATE INDEX events_push ON events(push_id, at);

CREATE TABLE script_generations (
    id INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    loaded_at INTEGER NOT NULL,
    ok INTEGER NOT NULL,
    files TEXT NOT NULL,                    -- JSON array
    error TEXT
);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    uid INTEGER,                            -- peer uid; NULL for the daemon itself
    action TEXT NOT NULL,
    target TEXT,
    ok INTEGER NOT NULL,
    detail TEXT
);
CREATE INDEX audit_at ON audit(at);
"#,
    // 2: indexes the send path does not have to move, and counters for the
    // send path's one counted move kept in Rust.
    //
    // Every send moves a delivery pending → sending → sent. With
    // (push_id, state, id) that moved its index entry twice and, with
    // (member_id, sent_at), once more; each move is a delete and an insert
    // in a B-tree. Now the push index never changes, the pending index loses
    // the row once, and failures (rare) get their own partial index, which
    // also serves the failures view in (class, code) order. The member index
    // no longer carries sent_at: a member has few deliveries to look through.
    //
    // Unlinked statuses get their own small index (see below).
    //
    // sending → sent is counted by `deliveries::mark_sent_many`, one counter
    // update per batch instead of two statements per row from the trigger.
    r#"
DROP INDEX deliveries_push_state;
DROP INDEX deliveries_member;
CREATE INDEX deliveries_push ON deliveries(push_id);
CREATE INDEX deliveries_pending ON deliveries(push_id, state) WHERE state = 0;
CREATE INDEX deliveries_failed ON deliveries(push_id, error_class, error_code) WHERE state = 3;
CREATE INDEX deliveries_member ON deliveries(member_id);

-- Statuses that arrived before their send was recorded (and statuses of
-- messages that are not ours): every recorded batch of sends asks this small
-- index first, and is usually told there is nothing to pick up.
CREATE INDEX events_early ON events(channel, dedupe_key)
 WHERE delivery_id IS NULL AND kind IN ('status_sent', 'status_delivered', 'status_read', 'status_failed');

DROP TRIGGER deliveries_count_update;
CREATE TRIGGER deliveries_count_update AFTER UPDATE OF state, read_at, interacted_at ON deliveries
WHEN NOT (OLD.state = 1 AND NEW.state = 2) AND (
     (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END) IS NOT (CASE WHEN NEW.state <= 1 THEN 0 ELSE NEW.state END)
  OR (OLD.read_at IS NULL) IS NOT (NEW.read_at IS NULL)
  OR (OLD.interacted_at IS NULL) IS NOT (NEW.interacted_at IS NULL))
BEGIN
    UPDATE push_counts SET n = n - 1
     WHERE push_id = OLD.push_id AND state = (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END)
       AND rd = (OLD.read_at IS NOT NULL) AND ia = (OLD.interacted_at IS NOT NULL);
    INSERT INTO push_counts (push_id, state, rd, ia, n)
    VALUES (NEW.push_id, CASE WHEN NEW.state <= 1 THEN 0 ELSE NEW.state END,
            NEW.read_at IS NOT NULL, NEW.interacted_at IS NOT NULL, 1)
    ON CONFLICT (push_id, state, rd, ia) DO UPDATE SET n = n + 1;
END;
"#,
    // 3: claims. A first attempt is no longer marked `sending` row by row:
    // the runner claims a group of fresh recipients (never attempted, not
    // deferred) in one row here, committed before any of their requests
    // leaves, and drops the claim once every outcome is recorded. A fresh
    // pending delivery inside a live claim *is* `sending` (see
    // `deliveries::STATE_SQL`); after a crash it ends failed/interrupted
    // like any other `sending` row. That takes one row rewrite per recipient
    // (and the commit that carried it) off the send path. Retries and
    // deferred recipients are still marked one by one (state 1).
    //
    // Fresh rows then move pending → sent directly; like sending → sent,
    // that move is counted in Rust by `deliveries::mark_sent_many`.
    r#"
CREATE TABLE claims (
    id INTEGER PRIMARY KEY,
    push_id INTEGER NOT NULL,
    first_id INTEGER NOT NULL,              -- the claimed deliveries' id range
    last_id INTEGER NOT NULL,
    at INTEGER NOT NULL                     -- when the group was claimed (its sending time)
);

DROP TRIGGER deliveries_count_update;
CREATE TRIGGER deliveries_count_update AFTER UPDATE OF state, read_at, interacted_at ON deliveries
WHEN NOT (OLD.state <= 1 AND NEW.state = 2) AND (
     (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END) IS NOT (CASE WHEN NEW.state <= 1 THEN 0 ELSE NEW.state END)
  OR (OLD.read_at IS NULL) IS NOT (NEW.read_at IS NULL)
  OR (OLD.interacted_at IS NULL) IS NOT (NEW.interacted_at IS NULL))
BEGIN
    UPDATE push_counts SET n = n - 1
     WHERE push_id = OLD.push_id AND state = (CASE WHEN OLD.state <= 1 THEN 0 ELSE OLD.state END)
       AND rd = (OLD.read_at IS NOT NULL) AND ia = (OLD.interacted_at IS NOT NULL);
    INSERT INTO push_counts (push_id, state, rd, ia, n)
    VALUES (NEW.push_id, CASE WHEN NEW.state <= 1 THEN 0 ELSE NEW.state END,
            NEW.read_at IS NOT NULL, NEW.interacted_at IS NOT NULL, 1)
    ON CONFLICT (push_id, state, rd, ia) DO UPDATE SET n = n + 1;
END;
"#,
    // 4: no index of pending rows. Every recipient entered it at resolution
    // and left it when its outcome was recorded — a fifth of the send path's
    // row write. The walk's first pass reads a push's pending rows through
    // the push index in id order (nearly every row it reads is pending);
    // later passes look only at rows given a time to wait for (retries,
    // deferrals), which have a small index of their own. The counters of a
    // freshly resolved push come from the push index and a small index of
    // skipped rows. (And resolution in chunks, below.)
    r#"
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_waiting ON deliveries(push_id) WHERE state = 0 AND next_attempt_at IS NOT NULL;
CREATE INDEX deliveries_skipped ON deliveries(push_id) WHERE state = 4;

-- An audience given as SQL is frozen in chunks of members, in id order,
-- while the first ones are already being sent: the member id the frozen
-- part reaches (NULL: not started), so a restart carries on from there.
ALTER TABLE pushes ADD COLUMN resolved_through INTEGER;
"#,
    // 5: no index on events(at). The one writer inserts events as it applies
    // them, stamped with the time it does (`store::receipts`), so rowid
    // order is time order and the index repeated it, at the price of one
    // more index entry for every event recorded (thousands a second in a
    // receipt storm). The message log walks rowids newest first, or the
    // (push_id, at) / (member_id, at) index when filtered; pruning finds the
    // retention boundary by rowid (`store::events`).
    r#"
DROP INDEX events_at;
"#,
    // 6: the recipients explorer. Rows with a read or an interaction get a
    // small index each, so "who read" and "who interacted" are walked
    // without scanning a push's other rows; sends never touch them (only
    // receipts set these times). Saved audiences remember the outcome and
    // filters they were made from (lineage).
    r#"
CREATE INDEX deliveries_read ON deliveries(push_id) WHERE read_at IS NOT NULL;
CREATE INDEX deliveries_interacted ON deliveries(push_id) WHERE interacted_at IS NOT NULL;
ALTER TABLE audiences ADD COLUMN outcome TEXT;
ALTER TABLE audiences ADD COLUMN filter TEXT;
"#,
    // 7: the web panel's sign-in state, so that a restart neither logs
    // everyone out nor lets an old login link work again. The HMAC key signs
    // session cookies and CSRF tokens; login links are kept as SHA-256
    // hashes (the link itself is only ever printed to the admin who asked);
    // sessions are rows so `panel logout-all` can end them. The audit trail
    // names who acted when it was not a socket peer: `panel:<session> (role)`.
    r#"
CREATE TABLE panel_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE panel_logins (
    token_hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,                     -- 'admin' | 'viewer'
    created_at INTEGER NOT NULL,
    created_by INTEGER,                     -- peer uid that asked for the link
    expires_at INTEGER NOT NULL,
    used_at INTEGER
) WITHOUT ROWID;
CREATE TABLE panel_sessions (
    id TEXT PRIMARY KEY,                    -- public id, named in the audit trail
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER
) WITHOUT ROWID;
ALTER TABLE audit ADD COLUMN actor TEXT;
"#,
    // 8: the delivery policy across pushes (`[policy]`). A first attempt
    // to a member is one row of `member_sends` (member, the member's local
    // calendar day, delivery), written in the transaction that claims it,
    // after counting that member's rows of the day and week
    // (`store::policy`); keyed by member first, so the count is one short
    // range read. Only written while a cap is configured. Recipients
    // skipped over a cap have a partial index (the report counts them),
    // and a push may bypass the policy (`policy = 'bypass'`).
    r#"
CREATE TABLE member_sends (
    member_id INTEGER NOT NULL,
    day INTEGER NOT NULL,                   -- days since 1970-01-01, member's local calendar
    delivery_id INTEGER NOT NULL,
    PRIMARY KEY (member_id, day, delivery_id)
) WITHOUT ROWID;
CREATE INDEX deliveries_capped ON deliveries(push_id) WHERE state = 4 AND skip_reason = 'capped';
ALTER TABLE pushes ADD COLUMN policy TEXT;  -- NULL: [policy] applies; 'bypass': it does not
"#,
    // 9: tracked links (`store::links`). A token is a MAC over (delivery,
    // link) under `link_key`, so sending writes nothing per recipient: the
    // URL is registered once per (push, link) in `links`, and a click writes
    // one `link_clicks` row (privacy individual) plus counters moved once
    // per batch of clicks. WITHOUT ROWID: every lookup is by its key.
    r#"
CREATE TABLE link_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE links (
    push_id INTEGER NOT NULL,
    link INTEGER NOT NULL,                  -- the push's link number (the token carries it)
    url TEXT NOT NULL,                      -- where a click goes: the only place it can go
    clicked INTEGER NOT NULL DEFAULT 0,     -- recipients who clicked it (privacy individual)
    clicks INTEGER NOT NULL DEFAULT 0,      -- every click, repeats and anonymous ones included
    previews INTEGER NOT NULL DEFAULT 0,    -- preview fetches (HEAD, fetchers, the preview window)
    created_at INTEGER NOT NULL,
    PRIMARY KEY (push_id, link)
) WITHOUT ROWID;
CREATE TABLE link_clicks (
    push_id INTEGER NOT NULL,
    delivery_id INTEGER NOT NULL,
    link INTEGER NOT NULL,
    first_at INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (push_id, delivery_id, link)
) WITHOUT ROWID;
CREATE TABLE link_totals (
    push_id INTEGER PRIMARY KEY,
    clicked INTEGER NOT NULL DEFAULT 0      -- recipients who clicked any link of the push
);
"#,
    // 10: A/B template variants (`crate::variants`). A push's plan is kept
    // as JSON; each delivery carries the variant it was (or will be) sent.
    // Members waiting for the winner are pending with next_attempt_at =
    // variants::REST_HELD; the decision (winner, when, by whom) is one
    // UPDATE of the push together with the release of those members.
    // deliveries_failed_order: the explorer's Sent Fail tab in delivery
    // order without a sort of every failed row (10M members).
    r#"
ALTER TABLE deliveries ADD COLUMN variant TEXT;
ALTER TABLE pushes ADD COLUMN ab TEXT;                 -- variants::Plan as JSON; NULL: no variants
ALTER TABLE pushes ADD COLUMN ab_decide_at INTEGER;    -- the test share was sent: winner due then
ALTER TABLE pushes ADD COLUMN ab_winner TEXT;
ALTER TABLE pushes ADD COLUMN ab_decided_at INTEGER;
ALTER TABLE pushes ADD COLUMN ab_decided_by TEXT;      -- 'auto' or the admin who picked
CREATE INDEX deliveries_failed_order ON deliveries(push_id, id) WHERE state = 3;
"#,
];

pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to the current schema, one transaction per step.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<i64> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > VERSION {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISMATCH),
            Some(format!(
                "database schema version {current} is newer than this pushd ({VERSION}); upgrade pushd"
            )),
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ErrorClass;
    use crate::store::deliveries;

    fn recount_matches(c: &Connection) {
        let q = |sql: &str| -> Vec<(i64, i64, i64, i64)> {
            c.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap()
        };
        assert_eq!(
            q(
                "SELECT CASE WHEN state <= 1 THEN 0 ELSE state END s, read_at IS NOT NULL r,
                      interacted_at IS NOT NULL i, count(*)
               FROM deliveries WHERE push_id = 1 GROUP BY s, r, i ORDER BY s, r, i"
            ),
            q(
                "SELECT state, rd, ia, n FROM push_counts WHERE push_id = 1 AND n > 0 ORDER BY state, rd, ia"
            )
        );
    }

    #[test]
    fn a_version_1_database_upgrades_with_its_counters_intact() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Connection::open(dir.path().join("v1.db")).unwrap();
        c.execute_batch(MIGRATIONS[0]).unwrap();
        c.pragma_update(None, "user_version", 1).unwrap();
        // A push mid-flight under version 1: pending, sending, sent+read.
        c.execute_batch(
            "INSERT INTO deliveries (id, push_id, member_id, state) VALUES (1, 1, 1, 0), (2, 1, 2, 0), (3, 1, 3, 0);
             INSERT INTO push_counts VALUES (1, 0, 0, 0, 3);
             UPDATE deliveries SET state = 1 WHERE id IN (2, 3);
             UPDATE deliveries SET state = 2, provider_message_id = 'p3', sent_at = 5 WHERE id = 3;
             UPDATE deliveries SET read_at = 6 WHERE id = 3;",
        )
        .unwrap();
        recount_matches(&c);
        assert_eq!(migrate(&mut c).unwrap(), VERSION);
        recount_matches(&c);
        // The send path on the new schema: batch-counted sent, trigger-counted failure.
        deliveries::register_functions(&c).unwrap();
        let row = deliveries::SentRow {
            id: 2,
            provider_id: "p2",
            at: 7,
            sending_at: 6,
        };
        let sent = deliveries::mark_sent_many(&c, 1, "sim", &[row]).unwrap();
        assert!(sent.contains(&2));
        deliveries::mark_sending(&c, 1, "sim", 8).unwrap();
        let attempt = deliveries::Attempt {
            channel: "sim".into(),
            sending_at: 8,
        };
        deliveries::mark_failed(&c, 1, &attempt, ErrorClass::Blocked, "b", "blocked", 9).unwrap();
        recount_matches(&c);
        let pending: i64 = c
            .query_row(
                "SELECT count(*) FROM deliveries WHERE push_id = 1 AND state = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(pending, 0);
        // A database from a newer pushd is refused, not touched.
        c.pragma_update(None, "user_version", VERSION + 1).unwrap();
        let e = migrate(&mut c).unwrap_err().to_string();
        assert!(e.contains("newer than this pushd"), "{e}");
    }
}
