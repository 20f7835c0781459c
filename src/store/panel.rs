//! The web panel's sign-in state: the key that signs session cookies, the
//! one-time login links (kept as hashes) and the browser sessions. Kept in
//! the database so a restart neither logs everyone out nor revives a link
//! that was already used.

use super::Result;
use crate::model::Millis;
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a panel session may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads and acts (pause, cancel, retry audiences, new pushes).
    Admin,
    /// Reads only; every action answers 403.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A live browser session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public id: named in the audit trail; useless without the signing key.
    pub id: String,
    pub role: Role,
    pub expires_at: Millis,
}

/// `n` random bytes from the thread's CSPRNG (ChaCha, seeded by the OS).
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::rng().fill_bytes(&mut b);
    b
}

/// Login links are stored by hash: the database never holds a usable link.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The signing key, created on first use and kept across restarts.
pub fn signing_key(conn: &Connection, now: Millis) -> Result<Vec<u8>> {
    conn.execute(
        "INSERT INTO panel_key (id, key, created_at) VALUES (1, ?1, ?2) ON CONFLICT (id) DO NOTHING",
        params![random_bytes(32), now],
    )?;
    Ok(conn.query_row("SELECT key FROM panel_key WHERE id = 1", [], |r| r.get(0))?)
}

/// Records a one-time login link (by hash) valid until `expires_at`.
pub fn create_login(
    conn: &Connection,
    token: &str,
    role: Role,
    created_by: Option<u32>,
    now: Millis,
    expires_at: Millis,
) -> Result<()> {
    // Links nobody opened in time are of no use to anyone: drop them here
    // rather than in a timer.
    conn.execute(
        "DELETE FROM panel_logins WHERE expires_at < ?1 - 86400000",
        [now],
    )?;
    conn.execute(
        "INSERT INTO panel_logins (token_hash, role, created_at, created_by, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash(token), role.as_str(), now, created_by, expires_at],
    )?;
    Ok(())
}

/// Uses a login link once: the role it grants, or `None` when it is
/// unknown, already used or expired. One statement, so two browsers opening
/// the same link cannot both get in.
pub fn redeem_login(conn: &Connection, token: &str, now: Millis) -> Result<Option<Role>> {
    let role: Option<String> = conn
        .query_row(
            "UPDATE panel_logins SET used_at = ?2
             WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2
             RETURNING role",
            params![token_hash(token), now],
            |r| r.get(0),
        )
        .optional()?;
    Ok(role.as_deref().and_then(Role::parse))
}

pub fn create_session(conn: &Connection, session: &Session, now: Millis) -> Result<()> {
    conn.execute(
        "DELETE FROM panel_sessions WHERE expires_at < ?1 - 86400000",
        [now],
    )?;
    conn.execute(
        "INSERT INTO panel_sessions (id, role, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
        params![session.id, session.role.as_str(), now, session.expires_at],
    )?;
    Ok(())
}

/// The session if it exists, has not ended and has not expired.
pub fn session(conn: &Connection, id: &str, now: Millis) -> Result<Option<Session>> {
    let row: Option<(String, Millis)> = conn
        .prepare_cached(
            "SELECT role, expires_at FROM panel_sessions
             WHERE id = ?1 AND ended_at IS NULL AND expires_at > ?2",
        )?
        .query_row(params![id, now], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    Ok(row.and_then(|(role, expires_at)| {
        Role::parse(&role).map(|role| Session {
            id: id.to_string(),
            role,
            expires_at,
        })
    }))
}

pub fn end_session(conn: &Connection, id: &str, now: Millis) -> Result<bool> {
    let n = conn.execute(
        "UPDATE panel_sessions SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
        params![id, now],
    )?;
    Ok(n > 0)
}

/// Ends every session and voids every unused login link. Returns the
/// number of sessions ended.
pub fn end_all(conn: &Connection, now: Millis) -> Result<u64> {
    let n = conn.execute(
        "UPDATE panel_sessions SET ended_at = ?1 WHERE ended_at IS NULL AND expires_at > ?1",
        [now],
    )?;
    conn.execute(
        "UPDATE panel_logins SET expires_at = ?1 WHERE used_at IS NULL AND expires_at > ?1",
        [now],
    )?;
    Ok(n as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    fn db() -> Connection {
        let mut c = Connection::open_in_memory().unwrap();
        schema::migrate(&mut c).unwrap();
        c
    }

    #[test]
    fn a_link_works_once_and_not_after_it_expires() {
        let c = db();
        create_login(&c, "tok", Role::Viewer, Some(7), 1_000, 2_000).unwrap();
        let stored: String = c
            .query_row("SELECT token_hash FROM panel_logins", [], |r| r.get(0))
            .unwrap();
        assert_ne!(stored, "tok", "the link itself is never stored");
        assert_eq!(redeem_login(&c, "tok", 1_500).unwrap(), Some(Role::Viewer));
        assert_eq!(redeem_login(&c, "tok", 1_500).unwrap(), None, "used");
        create_login(&c, "late", Role::Admin, None, 1_000, 2_000).unwrap();
        assert_eq!(redeem_login(&c, "late", 2_000).unwrap(), None, "expired");
        assert_eq!(redeem_login(&c, "nope", 1_500).unwrap(), None);
    }

    #[test]
    fn the_key_is_made_once_and_sessions_end() {
        let c = db();
        let k = signing_key(&c, 1).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(signing_key(&c, 2).unwrap(), k);
        let s = Session {
            id: "abc".into(),
            role: Role::Admin,
            expires_at: 10_000,
        };
        create_session(&c, &s, 1_000).unwrap();
        assert_eq!(session(&c, "abc", 2_000).unwrap(), Some(s.clone()));
        assert_eq!(session(&c, "abc", 10_000).unwrap(), None, "expired");
        create_login(&c, "t", Role::Admin, None, 1_000, 9_000).unwrap();
        assert_eq!(end_all(&c, 3_000).unwrap(), 1);
        assert_eq!(session(&c, "abc", 4_000).unwrap(), None);
        assert_eq!(redeem_login(&c, "t", 4_000).unwrap(), None, "voided");
    }
}
