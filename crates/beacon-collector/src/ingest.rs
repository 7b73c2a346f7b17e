//! The ingest service: the one writer. Handlers submit operations and wait; a single task takes
//! everything queued, commits it as one batch (group commit) and answers each submitter with its
//! outcome. Throughput is bounded by transactions, not by one fsync per request, and a handler only
//! answers `200` after the batch holding its item committed.

use crate::error::ApiError;
use crate::metrics::{STORE_BATCH_SIZE, STORE_COMMIT_SECONDS};
use beacon_store::{Store, WriteOp, WriteOutcome};
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
    ) -> (Ingest, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let task = tokio::spawn(run(store, rx, batch_max.max(1)));
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

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Job>, batch_max: usize) {
    let mut jobs: Vec<Job> = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        let (ops, replies): (Vec<_>, Vec<_>) = jobs.drain(..).map(|j| (j.op, j.reply)).unzip();
        let n = ops.len();
        let started = Instant::now();
        let result = store.write_batch(ops).await;
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
            Err(e) => {
                tracing::warn!(error = %e, items = n, "batch commit failed");
                let msg = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(msg.clone()));
                }
            }
        }
    }
    tracing::debug!("ingest writer stopped");
}
