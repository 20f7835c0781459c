//! Script generations as loaded: every load attempt, good or bad, with its
//! hash and files (or its errors), numbered in load order across restarts.

use super::Result;
use crate::model::now_ms;
use rusqlite::{Connection, params};

/// The highest generation number recorded (0 for a new database).
pub fn last_number(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row(
        "SELECT coalesce(max(id), 0) FROM script_generations",
        [],
        |r| r.get(0),
    )?)
}

/// A generation that validated and went live.
pub fn record_ok(conn: &Connection, number: i64, hash: &str, files_json: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO script_generations (id, hash, loaded_at, ok, files) VALUES (?1, ?2, ?3, 1, ?4)",
        params![number, hash, now_ms(), files_json],
    )?;
    Ok(())
}

/// A load attempt that failed, with its errors.
pub fn record_failed(conn: &Connection, number: i64, errors: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO script_generations (id, hash, loaded_at, ok, files, error) VALUES (?1, '', ?2, 0, '[]', ?3)",
        params![number, now_ms(), errors],
    )?;
    Ok(())
}
