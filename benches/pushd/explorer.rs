//! The recipients explorer's first page on a large push: `push.recipients`
//! with an outcome filter over the control socket, beside the same filter
//! as a plain SQL query on a plain read-only connection to the same
//! database (SQLite picks its own plan), call for call in alternating order.

use crate::daemon::Daemon;
use crate::stats::{Paired, a_first};
use rusqlite::{Connection, OpenFlags};
use serde_json::json;
use std::time::{Duration, Instant};

/// One outcome the row measures.
pub struct Outcome {
    pub name: &'static str,
    /// The plain SQL condition over `deliveries d`.
    pub cond: &'static str,
    /// The ratio target: the 50 ms goal against the plain query's time at 1M
    /// members on the calibration run (docs/PERFORMANCE.md).
    pub target: f64,
}

pub const OUTCOMES: [Outcome; 2] = [
    // Dense (99.9 % of the push): the first 50 rows are the first 50 sent.
    // Plain query 0.11 ms → 0.11 / 50.
    Outcome {
        name: "not_read_or_interacted",
        cond: "d.state = 2 AND d.read_at IS NULL AND d.interacted_at IS NULL",
        target: 0.0022,
    },
    // Sparse (0.1 %, spread over the push). Plain query 4.4 ms → 4.4 / 50.
    Outcome {
        name: "sent_fail",
        cond: "d.state = 3",
        target: 0.088,
    },
];

/// The page size `push.recipients` uses by default.
const PAGE: u32 = 50;

/// First pages timed, each way.
const CALLS: usize = 21;

pub struct FirstPage {
    pub outcome: &'static Outcome,
    pub runs: Paired,
    /// Recipients on the page (pushd's; the bare query must agree).
    pub rows: usize,
}

fn bare_page(conn: &Connection, push: i64, cond: &str) -> (Duration, usize) {
    let t = Instant::now();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT d.id, d.state, d.attempts, d.sent_at, d.delivered_at, d.read_at, d.interacted_at,
                    d.failed_at, d.error_class, d.error_code, d.error_message,
                    m.id, m.channel, m.channel_user_id, m.name, m.locale
             FROM deliveries d JOIN members m ON m.id = d.member_id
             WHERE d.push_id = ?1 AND {cond} ORDER BY d.id LIMIT {PAGE}"
        ))
        .expect("prepare explorer query");
    let mut rows = stmt.query([push]).expect("explorer query");
    let mut n = 0;
    while let Some(r) = rows.next().expect("explorer row") {
        let _: i64 = r.get(0).expect("id");
        let _: Option<String> = r.get(14).expect("name");
        n += 1;
    }
    (t.elapsed(), n)
}

fn pushd_page(conn: &mut crate::daemon::Conn, push: i64, outcome: &str) -> (Duration, usize) {
    let t = Instant::now();
    let v = conn.call(
        "push.recipients",
        json!({ "push": push.to_string(), "outcome": outcome }),
    );
    let took = t.elapsed();
    assert_eq!(v["ok"], true, "push.recipients failed: {v}");
    let n = v["data"]["recipients"].as_array().map_or(0, Vec::len);
    (took, n)
}

/// The first page of each outcome of `push`, timed both ways.
pub fn first_pages(d: &Daemon, push: i64) -> Vec<FirstPage> {
    let plain = Connection::open_with_flags(d.db_path(), OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open read-only");
    let mut conn = d.conn();
    OUTCOMES
        .iter()
        .map(|outcome| {
            let mut runs = Paired::default();
            let mut rows = 0;
            for i in 0..CALLS {
                let ((p, n), (b, nb)) = if a_first(i) {
                    let b = bare_page(&plain, push, outcome.cond);
                    (pushd_page(&mut conn, push, outcome.name), b)
                } else {
                    let p = pushd_page(&mut conn, push, outcome.name);
                    (p, bare_page(&plain, push, outcome.cond))
                };
                assert_eq!(
                    n, nb,
                    "{}: pushd and the plain query disagree",
                    outcome.name
                );
                rows = n;
                runs.push(p, b);
            }
            FirstPage {
                outcome,
                runs,
                rows,
            }
        })
        .collect()
}
