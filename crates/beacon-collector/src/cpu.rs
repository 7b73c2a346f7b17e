//! CPU-heavy request work (decoding, parsing, scrubbing, grouping) off the async reactor, on tokio's
//! blocking pool, with at most two bodies per core in work at once: more would only add thread
//! switches, and every extra blocking thread keeps an allocator heap of its own.

use std::sync::LazyLock;
use tokio::sync::Semaphore;

static SLOTS: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(
        2 * std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2),
    )
});

/// Runs `f` on the blocking pool once a slot is free; `Err` with the reason when it could not run
/// (the runtime is shutting down, or `f` panicked).
pub async fn run<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|_| "cpu slots closed".to_string())?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| e.to_string())
}
