//! Group commit for SQLite: one writer task owns the only writing connection, takes the
//! writes queued while the previous batch was being made durable, runs each in its own
//! savepoint inside one transaction, and commits them together — one fsync for the whole
//! batch. Every caller is answered only after the commit that holds its write returned,
//! so an answer still means durable; a write that fails rolls back to its savepoint
//! alone, and the others in the batch still commit.
//!
//! Without it, every durable request pays its own fsync, and the pooled connections fight
//! over SQLite's single write lock (its busy handler sleeps between tries), which is what
//! capped registrations and tokens. PostgreSQL keeps its pool: its server groups commits
//! itself.

use std::path::PathBuf;

use sqlx::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use super::StoreError;

/// A boxed future, as the writes hand their work to the writer.
pub(super) type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// Most writes in one transaction: bounds the latency one batch adds to its last member.
const MAX_BATCH: usize = 256;
/// Writes waiting for the writer; beyond this, callers wait to queue (back-pressure).
const QUEUE: usize = 4096;

/// Called with the batch's commit error (if it failed) once the commit returned.
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;
/// A write: runs its statements on the writer's connection (or, when its batch could not
/// begin, is told why) and says whether they succeeded, with how to answer its caller.
type Job =
    Box<dyn for<'c> FnOnce(Result<&'c mut SqliteConnection, StoreError>) -> BoxFuture<'c, (bool, Finish)> + Send>;

#[derive(Clone)]
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> StoreError {
    StoreError("the database writer is not running; the write was not made".into())
}

impl GroupCommit {
    /// Starts the writer on `connection`. `path` and `identity` are the database file's,
    /// checked before each batch like the pool checks them before each use: a replaced
    /// file must fail loudly rather than take commits that a restart would lose.
    pub(super) fn start(connection: SqliteConnection, path: PathBuf, identity: (u64, u64)) -> Self {
        let (jobs, queue) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(run(connection, queue, path, identity));
        Self { jobs }
    }

    /// Runs `op` in the next batch and answers once that batch is committed (durable), or
    /// with the commit's error. `op` must not commit or roll back itself.
    pub(super) async fn write<T, E, F>(&self, op: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |connection| {
            Box::pin(async move {
                let outcome = match connection {
                    Ok(connection) => op(connection).await,
                    Err(cannot_begin) => Err(E::from(cannot_begin)),
                };
                let ok = outcome.is_ok();
                let finish: Finish = Box::new(move |commit_failed| {
                    let answer_with = match commit_failed {
                        Some(e) if ok => Err(E::from(StoreError(e.0.clone()))),
                        _ => outcome,
                    };
                    let _ = answer.send(answer_with);
                });
                (ok, finish)
            })
        });
        self.jobs.send(job).await.map_err(|_| E::from(stopped()))?;
        answered.await.map_err(|_| E::from(stopped()))?
    }
}

/// The writer: batches, savepoints, one commit, then the answers.
async fn run(mut connection: SqliteConnection, mut queue: mpsc::Receiver<Job>, path: PathBuf, identity: (u64, u64)) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A batch that cannot begin is refused, each write told why.
        let began = match super::sql::still_the_file(&path, identity) {
            Ok(()) => statement(&mut connection, "BEGIN IMMEDIATE").await,
            Err(e) => Err(e),
        };
        if let Err(e) = began {
            let cause = StoreError::from(e);
            for job in batch {
                let (_, finish) = job(Err(StoreError(cause.0.clone()))).await;
                finish(None);
            }
            continue;
        }
        let mut finishes = Vec::with_capacity(batch.len());
        for job in batch {
            if let Err(e) = statement(&mut connection, "SAVEPOINT write").await {
                let (_, finish) = job(Err(StoreError::from(e))).await;
                finishes.push(finish);
                continue;
            }
            let (ok, finish) = job(Ok(&mut connection)).await;
            let undone = if ok { Ok(()) } else { statement(&mut connection, "ROLLBACK TO write").await };
            if let Err(e) = undone.and(statement(&mut connection, "RELEASE write").await) {
                tracing::error!(error = %e, "a database write could not end");
            }
            finishes.push(finish);
        }
        let committed = statement(&mut connection, "COMMIT").await.map_err(StoreError::from);
        if committed.is_err() {
            let _ = statement(&mut connection, "ROLLBACK").await;
        }
        let failure = committed.err();
        for finish in finishes {
            finish(failure.as_ref());
        }
    }
}

/// Runs one fixed statement. Boxed with its lifetime spelled out: an unboxed sqlx future
/// borrowing the connection trips the compiler's check that the writer task is `Send`.
fn statement<'c>(connection: &'c mut SqliteConnection, sql: &'static str) -> BoxFuture<'c, Result<(), sqlx::Error>> {
    Box::pin(async move { sqlx::query(sql).execute(connection).await.map(|_| ()) })
}
