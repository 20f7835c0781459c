//! The control socket server: a listener that accepts under a connection
//! limit, a handler task per connection, and graceful shutdown designed in
//! (stop accepting, let in-flight commands finish, remove the socket).

use super::auth::{self, Peer};
use crate::commands::{self, Actor, Handles, Reply};
use crate::protocol::{Request, Response};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "another pushd is already serving {0} (stop it first, or set a different control.socket)"
    )]
    InUse(PathBuf),
    #[error("cannot use socket path {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("control.group {0:?} does not exist")]
    NoSuchGroup(String),
}

/// Binds the socket, replacing a stale file a dead daemon left behind but
/// refusing to steal one a live daemon is serving.
pub async fn bind(
    path: &Path,
    mode: u32,
    group: Option<&str>,
) -> Result<UnixListener, SocketError> {
    let io_err = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    if path.exists() {
        match UnixStream::connect(path).await {
            Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
            Err(_) => {
                tracing::info!(socket = %path.display(), "removing stale control socket");
                std::fs::remove_file(path).map_err(io_err)?;
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err)?;
    if let Some(group) = group {
        let gid = super::auth::gid_by_name(group)
            .or_else(|| group.parse().ok())
            .ok_or_else(|| SocketError::NoSuchGroup(group.to_string()))?;
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(io_err)?;
    }
    Ok(listener)
}

/// Serves until `shutdown` fires, then waits for open connections' current
/// commands to finish.
pub async fn run(listener: UnixListener, handles: Arc<Handles>, shutdown: CancellationToken) {
    let max = handles.config.get().control.max_connections;
    let limit = Arc::new(Semaphore::new(max));
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handles = handles.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            if let Err(e) = handle_connection(stream, handles, shutdown).await {
                tracing::debug!(error = %e, "control connection ended with an error");
            }
            drop(permit);
        });
    }
    tracker.close();
    tracker.wait().await;
}

enum Line {
    Data,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without the newline), never holding more than
/// `cap` bytes: an oversized line is consumed and reported as `TooLong`.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    let mut saw_any = false;
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(match (saw_any, too_long) {
                (false, _) => Line::Eof,
                (true, true) => Line::TooLong,
                (true, false) => Line::Data,
            });
        }
        saw_any = true;
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > cap {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        r.consume(used);
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Data });
        }
    }
}

async fn handle_connection(
    stream: UnixStream,
    handles: Arc<Handles>,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let peer = Peer::of(&stream)?;
    let (rd, mut wr) = stream.into_split();
    let mut reader = BufReader::with_capacity(64 * 1024, rd);
    let mut buf = Vec::new();
    loop {
        let (cap, idle) = {
            let c = handles.config.get();
            (c.control.max_line_bytes, c.control.idle_timeout)
        };
        let line = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = tokio::time::timeout(idle, read_line_capped(&mut reader, &mut buf, cap)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    let msg = format!("no complete request within {}; closing", crate::util::duration::format(idle));
                    let _ = wr.write_all(Response::err("timeout", msg).to_line().as_bytes()).await;
                    return Ok(());
                }
            },
        };
        let reply = match line {
            Line::Eof => return Ok(()),
            Line::TooLong => Reply::One(Response::err(
                "line_too_long",
                format!("request line is longer than control.max_line_bytes ({cap} bytes)"),
            )),
            Line::Data if buf.iter().all(u8::is_ascii_whitespace) => continue,
            Line::Data => match Request::parse(&buf) {
                Ok(req) => {
                    // Judged per request: a reload may change `control.admins`.
                    let admin = auth::is_admin(&peer, &handles.config.get().control);
                    commands::execute(&handles, &Actor::peer(peer.uid, admin), req).await
                }
                Err(e) => Reply::One(Response::err(e.code, e.message)),
            },
        };
        match reply {
            Reply::One(resp) => wr.write_all(resp.to_line().as_bytes()).await?,
            Reply::Stream(mut rx) => {
                let mut finished = false;
                while let Some(resp) = rx.recv().await {
                    finished = !resp.more;
                    wr.write_all(resp.to_line().as_bytes()).await?;
                }
                if !finished {
                    let end = Response::err(
                        "internal",
                        "the reply stream ended early; see the daemon log",
                    );
                    wr.write_all(end.to_line().as_bytes()).await?;
                }
            }
        }
    }
}
