//! The one writer. Jobs queue on a channel; the writer thread takes everything
//! queued, runs each job under its own savepoint inside one transaction, commits,
//! and only then answers each job. So a caller is never told "done" before its
//! write is durable, one failing job never undoes the others, and a burst of
//! small writes costs one commit. Jobs someone is waiting on to make progress
//! (`run_first`: a send's claim) go first, in a transaction of their own; a
//! run of ordinary jobs commits early when one arrives.

use super::{Result, StoreError};
use rusqlite::Connection;
use std::sync::Mutex;
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Most jobs folded into one transaction, so a long burst still commits often.
const MAX_BATCH: usize = 4096;

type Reply = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A job runs against the open transaction, or is told why there is none.
type Work = Box<dyn FnOnce(std::result::Result<&Connection, &StoreError>) -> Reply + Send>;

/// A job, and whether it goes first (see [`Writer::run_first`]).
struct Job {
    first: bool,
    work: Work,
}

pub struct Writer {
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    pub(super) fn start(conn: Connection) -> Result<Writer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("pushd-store-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(|e| StoreError::Io(format!("cannot start writer thread: {e}")))?;
        Ok(Writer {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    fn submit<T, F>(&self, first: bool, f: F) -> Result<tokio::sync::oneshot::Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
        let work: Work = Box::new(move |conn: std::result::Result<&Connection, &StoreError>| {
            let result = match conn {
                Ok(conn) => run_in_savepoint(conn, f),
                Err(e) => Err(e.clone()),
            };
            Box::new(move |commit_error: Option<&StoreError>| {
                let out = match commit_error {
                    Some(e) => Err(e.clone()),
                    None => result,
                };
                let _ = reply_tx.send(out);
            })
        });
        let guard = self.tx.lock().map_err(|_| StoreError::Closed)?;
        let sender = guard.as_ref().ok_or(StoreError::Closed)?;
        sender
            .send(Job { first, work })
            .map_err(|_| StoreError::Closed)?;
        Ok(reply_rx)
    }

    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(false, f)?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    /// [`Writer::run`] for a write someone is waiting on to make progress
    /// (a send waits for its `sending` mark): when the writer finds such jobs
    /// queued, it commits them in a transaction of their own before the rest.
    pub async fn run_first<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(true, f)?
            .await
            .map_err(|_| StoreError::Closed)?
    }

    pub fn run_blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.submit(false, f)?
            .blocking_recv()
            .map_err(|_| StoreError::Closed)?
    }

    /// Stops accepting jobs, lets queued ones commit, joins the thread.
    pub fn close(&self) {
        super::stop_and_join(&self.tx, &self.thread);
    }
}

/// Runs one statement through the statement cache: jobs are many and small,
/// and `execute_batch` would parse the SQL again for every one.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn run_in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    exec_cached(conn, "SAVEPOINT job")?;
    let result = f(conn);
    let end = if result.is_ok() {
        exec_cached(conn, "RELEASE job")
    } else {
        exec_cached(conn, "ROLLBACK TO job").and_then(|()| exec_cached(conn, "RELEASE job"))
    };
    match (result, end) {
        (Ok(v), Ok(())) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(e.into()),
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>) {
    let mut queue = Queue::default();
    loop {
        if queue.is_empty() {
            match rx.recv() {
                Ok(job) => queue.push(job),
                Err(_) => break,
            }
        }
        queue.take_from(&rx);
        if !queue.urgent.is_empty() {
            let mut urgent = std::mem::take(&mut queue.urgent).into_iter();
            run_transaction(&conn, || urgent.next());
            continue;
        }
        // Ordinary jobs share a transaction, which commits early when a job
        // someone waits on arrives meanwhile: a send's claim never waits
        // behind a long run of outcomes.
        let mut taken = 0;
        run_transaction(&conn, || {
            queue.take_from(&rx);
            if !queue.urgent.is_empty() || taken >= MAX_BATCH {
                return None;
            }
            taken += 1;
            queue.ordinary.pop_front()
        });
    }
    tracing::debug!("store writer stopped");
}

/// Jobs received and not yet run.
#[derive(Default)]
struct Queue {
    urgent: Vec<Job>,
    ordinary: std::collections::VecDeque<Job>,
}

impl Queue {
    fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.ordinary.is_empty()
    }

    fn push(&mut self, job: Job) {
        if job.first {
            self.urgent.push(job);
        } else {
            self.ordinary.push_back(job);
        }
    }

    /// Everything queued on the channel right now.
    fn take_from(&mut self, rx: &mpsc::Receiver<Job>) {
        while let Ok(job) = rx.try_recv() {
            self.push(job);
        }
    }
}

/// Runs the jobs `next` hands out in one transaction (until it says None),
/// then answers each once it committed.
fn run_transaction(conn: &Connection, mut next: impl FnMut() -> Option<Job>) {
    let Some(first) = next() else { return };
    if let Err(e) = exec_cached(conn, "BEGIN IMMEDIATE") {
        let err = StoreError::from(e);
        tracing::error!(error = %err, "store: cannot begin transaction");
        (first.work)(Err(&err))(None);
        while let Some(job) = next() {
            (job.work)(Err(&err))(None);
        }
        return;
    }
    let mut replies: Vec<Reply> = vec![(first.work)(Ok(conn))];
    while let Some(job) = next() {
        replies.push((job.work)(Ok(conn)));
    }
    let commit = exec_cached(conn, "COMMIT").map_err(StoreError::from);
    let err = match commit {
        Ok(()) => None,
        Err(e) => {
            tracing::error!(error = %e, "store: commit failed; rolling back the batch");
            let _ = conn.execute_batch("ROLLBACK");
            Some(e)
        }
    };
    for reply in replies {
        reply(err.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job someone waits on never waits behind a run of ordinary jobs
    /// queued before it: the ordinary transaction commits early for it.
    #[test]
    fn a_first_job_overtakes_queued_ordinary_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
        let w = Writer::start(conn).unwrap();
        let (started_tx, started) = std::sync::mpsc::channel::<&str>();
        let gate = |name: &'static str| {
            let (open, wait) = std::sync::mpsc::channel::<()>();
            let started = started_tx.clone();
            let job = move |c: &Connection| {
                let _ = started.send(name);
                let _ = wait.recv();
                c.execute("INSERT INTO t VALUES (?1)", [name])?;
                Ok(())
            };
            (open, job)
        };
        let (open0, o0) = gate("o0");
        let r0 = w.submit(false, o0).unwrap();
        assert_eq!(started.recv().unwrap(), "o0");
        // Queued while o0 runs: o1 (which will hold the writer too), and o2,
        // which reports whether the first job committed before it ran.
        let (open1, o1) = gate("o1");
        let r1 = w.submit(false, o1).unwrap();
        let r2 = w
            .submit(false, |c: &Connection| {
                Ok(
                    c.query_row("SELECT count(*) FROM t WHERE v = 'u'", [], |r| {
                        r.get::<_, i64>(0)
                    })?,
                )
            })
            .unwrap();
        open0.send(()).unwrap();
        assert_eq!(started.recv().unwrap(), "o1");
        let ru = w
            .submit(true, |c: &Connection| {
                c.execute("INSERT INTO t VALUES ('u')", [])?;
                Ok(())
            })
            .unwrap();
        open1.send(()).unwrap();
        r0.blocking_recv().unwrap().unwrap();
        r1.blocking_recv().unwrap().unwrap();
        ru.blocking_recv().unwrap().unwrap();
        assert_eq!(
            r2.blocking_recv().unwrap().unwrap(),
            1,
            "the first job ran before o2"
        );
        w.close();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn first_jobs_and_ordinary_jobs_all_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join("w.db")).unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .unwrap();
        let w = std::sync::Arc::new(Writer::start(conn).unwrap());
        let mut tasks = Vec::new();
        for n in 0..200i64 {
            let w = w.clone();
            tasks.push(tokio::spawn(async move {
                let insert = move |c: &Connection| {
                    if n % 50 == 7 {
                        // Fails after writing: its own write is undone, nobody else's.
                        c.execute("INSERT INTO t VALUES (?1)", [n])?;
                        return Err(StoreError::Invalid("no".into()));
                    }
                    Ok(c.execute("INSERT INTO t VALUES (?1)", [n])?)
                };
                if n % 2 == 0 {
                    w.run_first(insert).await
                } else {
                    w.run(insert).await
                }
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 4);
        let n: i64 = w
            .run(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 196);
        w.close();
    }
}
