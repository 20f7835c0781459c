//! The CLI side of the socket: connect, send one request, read the reply lines.

use crate::protocol::{Request, Response};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to {path}: {source} (is `pushd serve` running with this config? try --socket)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("connection to the daemon failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon closed the connection without replying")]
    Closed,
    #[error("unreadable reply from the daemon: {0}")]
    BadReply(String),
}

pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    line: String,
}

impl Client {
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (r, w) = stream.into_split();
        Ok(Client {
            reader: BufReader::new(r),
            writer: w,
            line: String::new(),
        })
    }

    pub async fn send(&mut self, req: &Request) -> Result<(), ClientError> {
        self.writer.write_all(req.to_line().as_bytes()).await?;
        Ok(())
    }

    /// The next reply line.
    pub async fn recv(&mut self) -> Result<Response, ClientError> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            return Err(ClientError::Closed);
        }
        serde_json::from_str(self.line.trim_end()).map_err(|e| ClientError::BadReply(e.to_string()))
    }

    /// Sends a request and returns its (single) reply.
    pub async fn call(&mut self, req: &Request) -> Result<Response, ClientError> {
        self.send(req).await?;
        self.recv().await
    }
}
