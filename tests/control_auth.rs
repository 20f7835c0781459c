//! Admin groups are the connecting process's, taken when it connects.
//!
//! A client process (uid 65533, with or without an admin group) connects
//! to the real daemon's socket, hands the connection to this test over
//! SCM_RIGHTS and exits. The test then sends a state-changing request on it.
//! Whether that is allowed must depend on the groups the client had when it
//! connected, not on whatever process holds its pid by the time the request
//! arrives: the pid-reuse half recycles the dead client's pid for a process
//! that is in the admin group (via /proc/sys/kernel/ns_last_pid).
//!
//! Needs root (to give the client another uid and groups); without it the
//! test says so in one loud line.

use crate::support::*;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::Duration;

const CLIENT_UID: u32 = 65533;
/// The admin group: a number no real group needs to have.
const ADMIN_GID: u32 = 54321;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A daemon whose only non-root admins are members of `ADMIN_GID`, with a
/// socket the client's uid can reach.
fn daemon() -> TestDaemon {
    let d = TestDaemon::start(&base_config(&format!(
        "[control]\nmode = \"0666\"\nowner_is_admin = false\nadmins = [\"gid:{ADMIN_GID}\"]\n"
    )));
    for dir in [d.dir.path().to_path_buf(), d.path("data")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    d
}

/// A `sockaddr_un` for `path`, built before any fork (no allocation after).
fn socket_address(path: &std::path::Path) -> libc::sockaddr_un {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_encoded_bytes();
    assert!(bytes.len() < addr.sun_path.len(), "socket path too long");
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    addr
}

/// Runs `/bin/true` as uid/gid `CLIENT_UID` with supplementary `groups`;
/// before exec the child connects to the daemon and sends the connection
/// over `courier`. Returns the child's pid once it has exited and been reaped.
fn connect_as_client(socket: &std::path::Path, groups: &[u32], courier: &UnixStream) -> i32 {
    let addr = socket_address(socket);
    let groups: Vec<libc::gid_t> = groups.to_vec();
    let courier_fd = courier.as_raw_fd();
    let mut cmd = Command::new("/bin/true");
    // SAFETY: the closure runs in the forked child and only makes system
    // calls on memory prepared before the fork (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(CLIENT_UID) != 0
                || libc::setuid(CLIENT_UID) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            if libc::connect(fd, (&raw const addr).cast(), len) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            send_fd(courier_fd, fd)
        });
    }
    let mut child = cmd.spawn().expect("spawn the client");
    let pid = child.id() as i32;
    let status = child.wait().expect("reap the client");
    assert!(status.success(), "client failed: {status}");
    pid
}

/// Sends `fd` over the Unix socket `via` (SCM_RIGHTS). Async-signal-safe.
fn send_fd(via: libc::c_int, fd: libc::c_int) -> std::io::Result<()> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 8];
    // SAFETY: msghdr and the control buffer are valid for the call; the
    // CMSG macros stay within `space` (large enough for one fd).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd);
        if libc::sendmsg(via, &msg, 0) != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Receives one fd sent with [`send_fd`].
fn recv_fd(via: &UnixStream) -> OwnedFd {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut space = [0u64; 8];
    // SAFETY: as in send_fd; the received fd is owned by us from here on.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = space.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&space) as _;
        let n = libc::recvmsg(via.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC);
        assert_eq!(n, 1, "recvmsg: {}", std::io::Error::last_os_error());
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        assert!(!cmsg.is_null(), "no fd came with the message");
        assert_eq!((*cmsg).cmsg_type, libc::SCM_RIGHTS);
        OwnedFd::from_raw_fd(std::ptr::read_unaligned(
            libc::CMSG_DATA(cmsg).cast::<libc::c_int>(),
        ))
    }
}

/// A connection opened by a client (now exited) with `groups`, and its pid.
fn handed_over_connection(d: &TestDaemon, groups: &[u32]) -> (UnixStream, i32) {
    let (courier, theirs) = UnixStream::pair().expect("socket pair");
    let pid = connect_as_client(&d.socket, groups, &theirs);
    let conn = UnixStream::from(recv_fd(&courier));
    (conn, pid)
}

/// Sends a state-changing request; returns the reply's error code, or "ok".
fn reload(conn: &mut UnixStream) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    conn.write_all(b"{\"cmd\":\"reload\"}\n").unwrap();
    let mut line = String::new();
    BufReader::new(&*conn).read_line(&mut line).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    if v["ok"] == true {
        "ok".into()
    } else {
        v["error"]["code"].as_str().unwrap_or("?").to_string()
    }
}

/// Starts a process in `ADMIN_GID` whose pid is `pid`, by setting the
/// kernel's last-issued pid just below it. Another process forking in
/// between takes the pid first, so this retries; `None` when the kernel
/// does not let us (no ns_last_pid, or not allowed to write it).
fn process_with_pid(pid: i32) -> Option<Child> {
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
        let mut cmd = Command::new("/bin/sleep");
        cmd.arg("60");
        // SAFETY: only system calls in the forked child.
        unsafe {
            cmd.pre_exec(|| {
                let groups = [ADMIN_GID as libc::gid_t];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(CLIENT_UID) != 0
                    || libc::setuid(CLIENT_UID) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("spawn the pid squatter");
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    None
}

#[test]
fn admin_groups_are_the_connecting_processs_at_connect_time() {
    if !is_root() {
        eprintln!(
            "SKIPPED admin_groups_are_the_connecting_processs_at_connect_time: needs root to run a client under another uid and groups"
        );
        return;
    }
    let d = daemon();

    // In the admin group when it connected: allowed, although the client
    // has exited by the time the request is read.
    let (mut conn, _) = handed_over_connection(&d, &[ADMIN_GID]);
    assert_eq!(reload(&mut conn), "ok");

    // Not in it when it connected: refused, whoever holds its pid now.
    let (mut conn, pid) = handed_over_connection(&d, &[]);
    let squatter = process_with_pid(pid);
    match &squatter {
        Some(_) => {}
        None => eprintln!(
            "NOTE admin_groups_are_the_connecting_processs_at_connect_time: cannot recycle pid {pid} (ns_last_pid unavailable); checking without a pid squatter"
        ),
    }
    assert_eq!(reload(&mut conn), "forbidden");
    if let Some(mut s) = squatter {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert!(d.log().contains("refused state change"), "{}", d.log());
    let allowed = count(
        &d.db(),
        "SELECT count(*) FROM audit WHERE action = 'reload' AND uid = 65533",
    );
    assert_eq!(
        allowed, 1,
        "exactly the admin-group client's reload is audited"
    );
}
