//! Who may change state: judged by the peer's kernel-reported credentials,
//! never by anything the client says.
//!
//! Everything is taken once, when the connection is accepted: uid and gid
//! from SO_PEERCRED, and the supplementary groups from SO_PEERGROUPS (the
//! groups of the process that called `connect`, as they were then). Reading
//! `/proc/<pid>/status` at request time instead would ask whichever process
//! holds that pid by then: after the client exits, a reused pid could lend
//! its groups to the connection. Kernels older than 4.13 lack SO_PEERGROUPS;
//! there the groups are those of the peer's uid in the group database
//! (getgrouplist), which is also fixed at accept time.

use crate::config::{AdminEntry, ControlConfig};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

/// `SO_PEERGROUPS` (Linux ≥ 4.13): 59 on every architecture Rust builds
/// pushd for but SPARC (0x3d, not wired up here: the getgrouplist fallback
/// applies). The libc crate does not export it for glibc targets.
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "sparc", target_arch = "sparc64"))
))]
const SO_PEERGROUPS: Option<libc::c_int> = Some(59);
#[cfg(not(all(
    target_os = "linux",
    not(any(target_arch = "sparc", target_arch = "sparc64"))
)))]
const SO_PEERGROUPS: Option<libc::c_int> = None;

/// The connected client, as the kernel reported it at accept time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
    /// Supplementary groups at connect time (the primary gid not included).
    pub groups: Vec<u32>,
}

impl Peer {
    /// The peer of an accepted control connection, groups included.
    pub fn of(stream: &tokio::net::UnixStream) -> io::Result<Peer> {
        let cred = stream.peer_cred()?;
        let (uid, gid) = (cred.uid(), cred.gid());
        let groups = match peer_groups(stream.as_raw_fd())? {
            Some(groups) => groups,
            None => user_groups(uid, gid),
        };
        Ok(Peer {
            uid,
            gid,
            pid: cred.pid(),
            groups,
        })
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}

/// The peer's supplementary groups from SO_PEERGROUPS; `None` when the
/// kernel does not support it.
fn peer_groups(fd: RawFd) -> io::Result<Option<Vec<u32>>> {
    let Some(opt) = SO_PEERGROUPS else {
        return Ok(None);
    };
    // NGROUPS_MAX is 65536; start small and grow to what the kernel asks for.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is valid for `len` bytes; the kernel writes at
        // most `len` bytes and reports the size it needs or wrote in `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let n = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(n);
            return Ok(Some(groups));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ERANGE) if n > groups.len() => groups.resize(n, 0),
            Some(libc::ENOPROTOOPT) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// The groups of `uid`'s user in the group database (the fallback for
/// kernels without SO_PEERGROUPS). Empty when the uid has no name.
fn user_groups(uid: u32, gid: u32) -> Vec<u32> {
    let Some(name) = user_name(uid) else {
        return Vec::new();
    };
    let Ok(c_name) = CString::new(name) else {
        return Vec::new();
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `groups` holds `n` entries; getgrouplist writes at most
        // that many and sets `n` to the number it has (or needs).
        let rc = unsafe { libc::getgrouplist(c_name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        let n = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(n);
            return groups;
        }
        if n <= groups.len() {
            // Cannot grow past what it asked for: give up on supplementary groups.
            return Vec::new();
        }
        groups.resize(n, 0);
    }
}

fn user_name(uid: u32) -> Option<String> {
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives it.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: on success pw_name points at a NUL-terminated string in buf.
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_string)
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
    control.admins.iter().any(|entry| match entry {
        AdminEntry::Uid(uid) => *uid == peer.uid,
        AdminEntry::Name(name) => {
            if let Some(n) = name.strip_prefix("uid:") {
                n.parse::<u32>().ok() == Some(peer.uid)
            } else if let Some(n) = name.strip_prefix("gid:") {
                n.parse::<u32>().is_ok_and(|g| peer.in_group(g))
            } else if let Some(n) = name.strip_prefix("group:") {
                gid_by_name(n).is_some_and(|g| peer.in_group(g))
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
            groups: vec![],
        };
        let other = Peer {
            uid: 4242,
            gid: 4343,
            pid: None,
            groups: vec![4444],
        };
        assert!(is_admin(&root, &c));
        assert!(!is_admin(&other, &c));
        c.admins = vec![AdminEntry::Uid(4242)];
        assert!(is_admin(&other, &c));
        c.admins = vec![AdminEntry::Name("gid:4343".into())];
        assert!(is_admin(&other, &c));
        c.admins = vec![AdminEntry::Name("gid:4444".into())];
        assert!(is_admin(&other, &c), "a supplementary group counts");
        c.admins = vec![AdminEntry::Name("gid:4545".into())];
        assert!(!is_admin(&other, &c));
        c.admins = vec![AdminEntry::Name("uid:1".into())];
        assert!(!is_admin(&other, &c));
        assert_eq!(uid_by_name("root"), Some(0));
    }

    /// Over a real socket pair, the groups are this process's own, as the
    /// kernel reports them (getgroups is the same question asked directly).
    #[tokio::test]
    async fn groups_are_the_connecting_processs() {
        let (a, _b) = tokio::net::UnixStream::pair().expect("socket pair");
        let peer = Peer::of(&a).expect("peer credentials");
        let mut own: Vec<libc::gid_t> = vec![0; 65536];
        // SAFETY: `own` has room for the maximum number of groups.
        let n = unsafe { libc::getgroups(own.len() as libc::c_int, own.as_mut_ptr()) };
        assert!(n >= 0, "{}", io::Error::last_os_error());
        own.truncate(n as usize);
        let mut got = peer.groups.clone();
        got.sort_unstable();
        own.sort_unstable();
        assert_eq!(got, own);
        assert_eq!(peer.uid, current_uid());
        assert_eq!(peer.pid, Some(std::process::id() as i32));
    }

    #[test]
    fn user_groups_include_the_primary_group() {
        // getgrouplist always lists the gid it is given.
        assert!(user_groups(0, 0).contains(&0));
        assert!(
            user_groups(u32::MAX - 7, 0).is_empty(),
            "an unnamed uid has none"
        );
    }
}
