//! The ingest service: the one writer. Handlers submit operations and wait; a single task takes
//! everything queued, commits it as one batch (group commit) and answers each submitter with its
//! outcome. Throughput is bounded by transactions, not by one fsync per request, and a handler only
//! answers `200` after the batch holding its item committed.
//!
//! One client's data must not fail another's write: when the store refuses a batch for its data
//! ([`StoreError::Rejected`]), the writer commits its operations one at a time, so only the one at
//! fault is refused ([`WriteOutcome::Unstorable`]) and every other one is committed and acknowledged.
//! The writer also keeps the dead-letter table a ring: at most `dead_letter_cap` rows per channel,
//! trimmed at most once a second after a batch that added dead letters.

use crate::error::ApiError;
use crate::metrics::{DEAD_LETTERS_DROPPED_TOTAL, STORE_BATCH_SIZE, STORE_COMMIT_SECONDS};
use beacon_store::{Store, StoreError, WriteOp, WriteOutcome};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

struct Job {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteOutcome, String>>,
}

/// A handle to submit writes. Cheap to clone; the writer stops once every handle is dropped and the
/// queue is drained.
#[derive(Clone)]
pub struct Ingest {
    tx: mpsc::Sender<Job>,
}

impl Ingest {
    /// Starts the writer task.
    pub fn start(
        store: Arc<dyn Store>,
        batch_max: usize,
        queue: usize,
        dead_letter_cap: u64,
    ) -> (Ingest, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let task = tokio::spawn(run(store, rx, batch_max.max(1), dead_letter_cap));
        (Ingest { tx }, task)
    }

    /// Queues one operation and waits until it is committed.
    pub async fn submit(&self, op: WriteOp) -> Result<WriteOutcome, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { op, reply })
            .await
            .map_err(|_| ApiError::Unavailable("the collector is shutting down".into()))?;
        match rx.await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(e)) => Err(ApiError::Unavailable(e)),
            Err(_) => Err(ApiError::Unavailable(
                "the writer stopped before committing".into(),
            )),
        }
    }
}

/// How often, at most, the dead-letter table is trimmed to its cap.
const TRIM_EVERY: Duration = Duration::from_secs(1);

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    dead_letter_cap: u64,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    let mut untrimmed = false;
    let mut last_trim = Instant::now() - TRIM_EVERY;
    loop {
        // With dead letters left to trim, wake up in time to trim them even when no batch comes.
        let received = if untrimmed {
            let wait = TRIM_EVERY.saturating_sub(last_trim.elapsed());
            tokio::time::timeout(wait, rx.recv_many(&mut jobs, batch_max)).await
        } else {
            Ok(rx.recv_many(&mut jobs, batch_max).await)
        };
        match received {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => {
                untrimmed = !trim(&*store, dead_letter_cap).await;
                last_trim = Instant::now();
                continue;
            }
        }
        let (ops, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.op, j.reply)).unzip();
        untrimmed |= ops.iter().any(|op| matches!(op, WriteOp::DeadLetter(_)));
        let ops: Arc<[WriteOp]> = ops.into();
        let n = ops.len();
        let started = Instant::now();
        let result = store.write_batch(ops.clone()).await;
        metrics::histogram!(STORE_BATCH_SIZE).record(n as f64);
        metrics::histogram!(STORE_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) if outcomes.len() == n => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            Ok(outcomes) => {
                tracing::error!(
                    sent = n,
                    got = outcomes.len(),
                    "store returned a wrong number of outcomes"
                );
                for reply in replies {
                    let _ = reply.send(Err("store returned a wrong number of outcomes".into()));
                }
            }
            Err(StoreError::Rejected(e)) => {
                tracing::warn!(error = %e, items = n, "batch refused for its data; committing its items one by one");
                for (op, reply) in ops.iter().zip(replies) {
                    let _ = reply.send(write_alone(&*store, op).await);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, items = n, "batch commit failed");
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
        if untrimmed && last_trim.elapsed() >= TRIM_EVERY {
            untrimmed = !trim(&*store, dead_letter_cap).await;
            last_trim = Instant::now();
        }
    }
    tracing::debug!("ingest writer stopped");
}

/// Trims the dead letters to `cap` per channel and counts what was removed; `false` when it failed.
async fn trim(store: &dyn Store, cap: u64) -> bool {
    match store.trim_dead_letters(cap).await {
        Ok(removed) => {
            for (channel, n) in removed {
                tracing::debug!(%channel, removed = n, "dead letters over the cap removed");
                metrics::counter!(DEAD_LETTERS_DROPPED_TOTAL, "channel" => channel).increment(n);
            }
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "trimming dead letters failed; retrying later");
            false
        }
    }
}

/// Commits one operation of a refused batch on its own.
async fn write_alone(store: &dyn Store, op: &WriteOp) -> Result<WriteOutcome, String> {
    match store.write_batch(Arc::from([op.clone()])).await {
        Ok(outcomes) => outcomes
            .into_iter()
            .next()
            .ok_or_else(|| "store returned no outcome".to_string()),
        Err(StoreError::Rejected(e)) => {
            tracing::warn!(error = %e, op = op.kind(), "the store refused an item's data");
            Ok(WriteOutcome::Unstorable)
        }
        Err(e) => Err(e.to_string()),
    }
}
