//! What the fuzz targets share: a counting global allocator, so a target can fail an input whose
//! peak heap use is out of proportion to its size.
//!
//! A target installs [`Counting`] as its `#[global_allocator]` and wraps the code under test in
//! [`within_budget`]: the allocation that takes the live heap more than the budget above where it
//! stood at the start aborts the process at once (before a quadratic blow-up can exhaust the
//! machine), which libFuzzer reports as a crash and saves the input for.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting live bytes and the peak within the current budget.
pub struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Live bytes at the start of the budget.
static BASE: AtomicUsize = AtomicUsize::new(0);
/// The budget in bytes above `BASE`; `usize::MAX` when no budget is armed.
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);
static WHAT: std::sync::atomic::AtomicPtr<&'static str> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

fn grew(by: usize) {
    let now = LIVE.fetch_add(by, Relaxed) + by;
    PEAK.fetch_max(now, Relaxed);
    let limit = LIMIT.load(Relaxed);
    if limit != usize::MAX {
        let used = now.saturating_sub(BASE.load(Relaxed));
        if used > limit {
            over_budget(used, limit);
        }
    }
}

#[cold]
fn over_budget(used: usize, limit: usize) -> ! {
    LIMIT.store(usize::MAX, Relaxed);
    let what = WHAT.load(Relaxed);
    // SAFETY: WHAT is null or points at a `&'static str` set by `within_budget`.
    let what: &str = if what.is_null() {
        "?"
    } else {
        unsafe { *what }
    };
    // No allocation here: stderr is unbuffered and integers format without the heap.
    let _ = writeln!(
        std::io::stderr(),
        "\n== HEAP BUDGET EXCEEDED in {what}: {used} live bytes above the start, budget {limit}\n"
    );
    std::process::abort();
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Relaxed);
            }
        }
        q
    }
}

/// Runs `f` with a heap budget of `limit` bytes above what is live now; aborts the process (a crash
/// for libFuzzer) the moment the budget is exceeded. Returns `f`'s result and the peak it used.
pub fn within_budget<T>(
    what: &'static &'static str,
    limit: usize,
    f: impl FnOnce() -> T,
) -> (T, usize) {
    // A panic (a failed check) is reported with the budget off: its message and backtrace allocate.
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            LIMIT.store(usize::MAX, Relaxed);
            previous(info);
        }));
    });
    let base = LIVE.load(Relaxed);
    BASE.store(base, Relaxed);
    PEAK.store(base, Relaxed);
    WHAT.store(what as *const &'static str as *mut &'static str, Relaxed);
    LIMIT.store(limit, Relaxed);
    let out = f();
    LIMIT.store(usize::MAX, Relaxed);
    (out, PEAK.load(Relaxed).saturating_sub(base))
}
