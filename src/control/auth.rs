//! Who may change state: judged by the peer's kernel-reported credentials
//! (SO_PEERCRED), never by anything the client says.

use crate::config::{AdminEntry, ControlConfig};
use std::ffi::CString;

/// The connected client, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl Peer {
    /// Primary gid plus supplementary groups (from /proc when the pid is known).
    fn groups(&self) -> Vec<u32> {
        let mut groups = vec![self.gid];
        if let Some(pid) = self.pid
            && let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(line) = status.lines().find(|l| l.starts_with("Groups:"))
        {
            groups.extend(
                line["Groups:".len()..]
                    .split_whitespace()
                    .filter_map(|g| g.parse::<u32>().ok()),
            );
        }
        groups
    }
}

pub fn current_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

pub fn uid_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe {
        libc::getpwnam_r(
            c.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(pwd.pw_uid)
}

pub fn gid_by_name(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe {
        libc::getgrnam_r(
            c.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

/// Root always; the daemon's own user when `owner_is_admin`; then `admins`.
pub fn is_admin(peer: &Peer, control: &ControlConfig) -> bool {
    if peer.uid == 0 || (control.owner_is_admin && peer.uid == current_uid()) {
        return true;
    }
    let groups = peer.groups();
    control.admins.iter().any(|entry| match entry {
        AdminEntry::Uid(uid) => *uid == peer.uid,
        AdminEntry::Name(name) => {
            if let Some(n) = name.strip_prefix("uid:") {
                n.parse::<u32>().ok() == Some(peer.uid)
            } else if let Some(n) = name.strip_prefix("gid:") {
                n.parse::<u32>().is_ok_and(|g| groups.contains(&g))
            } else if let Some(n) = name.strip_prefix("group:") {
                gid_by_name(n).is_some_and(|g| groups.contains(&g))
            } else {
                uid_by_name(name) == Some(peer.uid)
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_rules() {
        let mut c = ControlConfig {
            owner_is_admin: false,
            ..Default::default()
        };
        let root = Peer {
            uid: 0,
            gid: 0,
            pid: None,
        };
        let other = Peer {
            uid: 4242,
            gid: 4343,
            pid: None,
        };
        assert!(is_admin(&root, &c));
        assert!(!is_admin(&other, &c));
        c.admins = vec![AdminEntry::Uid(4242)];
        assert!(is_admin(&other, &c));
        c.admins = vec![AdminEntry::Name("gid:4343".into())];
        assert!(is_admin(&other, &c));
        c.admins = vec![AdminEntry::Name("uid:1".into())];
        assert!(!is_admin(&other, &c));
        assert_eq!(uid_by_name("root"), Some(0));
    }
}
