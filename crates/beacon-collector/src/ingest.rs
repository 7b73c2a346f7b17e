//! The ingest service: the one writer. Handlers submit operations and wait; a single task takes
//! everything queued, commits it as one batch (group commit) and answers each submitter with its
//! outcome. Throughput is bounded by transactions, not by one fsync per request, and a handler only
//! answers `200` after the batch holding its item committed.
//!
//! One client's data must not fail another's write: when the store refuses a batch for its data
//! ([`StoreError::Rejected`]), the writer commits its operations one at a time, so only the one at
//! fault is refused ([`WriteOutcome::Unstorable`]) and every other one is committed and acknowledged.
//! The writer also keeps the dead-letter table a ring of at most `dead_letter_cap` rows per channel:
//! oldest removed (and counted) before the batch that reached the cap is answered.

use crate::error::ApiError;
use crate::metrics::{DEAD_LETTERS_DROPPED_TOTAL, STORE_BATCH_SIZE, STORE_COMMIT_SECONDS};
use beacon_store::{Store, StoreError, WriteOp, WriteOutcome};
use std::sync::Arc;
use std::time::Instant;
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

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    dead_letter_cap: u64,
) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    // The ring is trimmed once `slack` dead letters were added, down to `cap - slack`: a trim per
    // sixteenth of the cap (its cost amortised over as many letters), and never more than `cap` rows
    // once a batch is answered.
    let slack = (dead_letter_cap / 16).max(1);
    let mut added = 0u64;
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        let (ops, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.op, j.reply)).unzip();
        let letters = ops
            .iter()
            .filter(|op| matches!(op, WriteOp::DeadLetter(_)))
            .count() as u64;
        let ops: Arc<[WriteOp]> = ops.into();
        let n = ops.len();
        let started = Instant::now();
        let result = store.write_batch(ops.clone()).await;
        metrics::histogram!(STORE_BATCH_SIZE).record(n as f64);
        metrics::histogram!(STORE_COMMIT_SECONDS).record(started.elapsed().as_secs_f64());
        let outcomes: Vec<Result<WriteOutcome, String>> = match result {
            Ok(outcomes) if outcomes.len() == n => outcomes.into_iter().map(Ok).collect(),
            Ok(outcomes) => {
                tracing::error!(
                    sent = n,
                    got = outcomes.len(),
                    "store returned a wrong number of outcomes"
                );
                vec![Err("store returned a wrong number of outcomes".into()); n]
            }
            Err(StoreError::Rejected(e)) => {
                tracing::warn!(error = %e, items = n, "batch refused for its data; committing its items one by one");
                let mut outcomes = Vec::with_capacity(n);
                for op in ops.iter() {
                    outcomes.push(write_alone(&*store, op).await);
                }
                outcomes
            }
            Err(e) => {
                tracing::warn!(error = %e, items = n, "batch commit failed");
                vec![Err(e.to_string()); n]
            }
        };
        added += letters;
        if added >= slack && trim(&*store, dead_letter_cap.saturating_sub(slack)).await {
            added = 0;
        }
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
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
