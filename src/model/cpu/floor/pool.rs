//! The kernels' thread pool. Its workers spin briefly between calls, then
//! park, and the calling thread takes a share, so the dozens of parallel
//! steps in one forward pass cost no sleep/wake-up each while the model is
//! busy, and nothing when it is idle.
//!
//! Work is claimed chunk by chunk from one shared cursor, and the caller
//! waits only for chunks that were claimed: a worker that the OS has
//! descheduled (a busy neighbour, more threads than CPUs) and that claimed
//! nothing holds no step up. The caller does whatever no one else took.
//! (candle's barrier pool, used before, waited for every worker to check in
//! at every step, so one descheduled worker cost a whole scheduler slice.)

use std::cell::Cell;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, PoisonError};

/// Spins of a waiting worker before it parks: tens of microseconds, about
/// the gap between two parallel steps of a forward pass.
const SPINS_BEFORE_PARK: u32 = 1 << 14;

/// Chunks per thread in one step: enough that a slow thread's tail is
/// small, few enough that the cursor is not contended.
const CHUNKS_PER_THREAD: usize = 8;

thread_local! {
    /// Set while this thread runs a step's chunks: a nested step runs
    /// inline instead of waiting on the pool it is part of.
    static IN_STEP: Cell<bool> = const { Cell::new(false) };
}

/// One step's entry point: runs the caller's closure (at `data`) on a range.
type Trampoline = unsafe fn(*const (), Range<usize>);

/// # Safety
/// `data` must point to a live `F`.
unsafe fn trampoline<F: Fn(Range<usize>) + Sync>(data: *const (), range: Range<usize>) {
    // SAFETY: the caller guarantees `data` is a live F.
    let f = unsafe { &*(data as *const F) };
    f(range)
}

/// What the caller and the workers share.
struct Shared {
    /// The step's generation (high 32 bits) and its next unclaimed item
    /// (low 32 bits): a claim is a compare-exchange that also checks the
    /// generation, so a late worker can never claim from a newer step.
    cursor: AtomicU64,
    /// The current step's generation (high 32 bits) and item count: a
    /// worker takes the count only with its generation, so a count already
    /// written for the next step is never read as this step's.
    items: AtomicU64,
    /// The closure to run, written before the step's generation is
    /// published in `cursor`.
    data: AtomicPtr<()>,
    call: AtomicUsize,
    /// Items finished in the current step.
    done: AtomicUsize,
    /// A chunk of the current step panicked.
    panicked: AtomicBool,
    /// Workers parked, and where they park.
    parked: AtomicUsize,
    park: Mutex<()>,
    wake: Condvar,
}

/// A pool of `threads - 1` workers plus the calling thread.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: usize,
    /// One step at a time.
    step: Mutex<u32>,
}

impl Pool {
    fn new(threads: usize) -> Self {
        let shared = Arc::new(Shared {
            cursor: AtomicU64::new(0),
            items: AtomicU64::new(0),
            data: AtomicPtr::new(std::ptr::null_mut()),
            call: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            parked: AtomicUsize::new(0),
            park: Mutex::new(()),
            wake: Condvar::new(),
        });
        for index in 1..threads {
            let shared = Arc::clone(&shared);
            // A worker that cannot start leaves its share to the others.
            let _ = std::thread::Builder::new()
                .name(format!("sentiment-{index}"))
                .spawn(move || worker(&shared, threads));
        }
        Self {
            shared,
            threads,
            step: Mutex::new(0),
        }
    }

    /// Threads a step runs on, the caller included.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }

    /// `f` over every chunk of `0..items`, on the pool and the calling
    /// thread; returns when every item is done. A panic in a chunk is
    /// raised here, once the step is over.
    pub(crate) fn execute_chunked<F: Fn(Range<usize>) + Sync>(&self, items: usize, f: F) {
        if items == 0 {
            return;
        }
        if self.threads == 1 || items == 1 || IN_STEP.with(Cell::get) || items > u32::MAX as usize {
            return f(0..items);
        }
        let mut generation = self.step.lock().unwrap_or_else(PoisonError::into_inner);
        *generation = generation.wrapping_add(1).max(1);
        let generation = *generation;
        let shared = &*self.shared;
        shared.items.store(
            (u64::from(generation) << 32) | items as u64,
            Ordering::Release,
        );
        shared
            .data
            .store(&f as *const F as *mut (), Ordering::Relaxed);
        shared
            .call
            .store(trampoline::<F> as Trampoline as usize, Ordering::Relaxed);
        shared.done.store(0, Ordering::Relaxed);
        shared.panicked.store(false, Ordering::Relaxed);
        // Publishes the step (SeqCst, so that either a parking worker sees
        // it or this thread sees the worker parked).
        shared
            .cursor
            .store(u64::from(generation) << 32, Ordering::SeqCst);
        if shared.parked.load(Ordering::SeqCst) > 0 {
            let _guard = shared.park.lock().unwrap_or_else(PoisonError::into_inner);
            shared.wake.notify_all();
        }
        run_claims(shared, generation, self.threads);
        let mut spins = 0u32;
        while shared.done.load(Ordering::Acquire) < items {
            spins = spins.saturating_add(1);
            if spins < SPINS_BEFORE_PARK {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        if shared.panicked.load(Ordering::Relaxed) {
            panic!("a parallel step of the forward pass panicked");
        }
    }
}

/// Claims and runs chunks of step `generation` until none is left.
fn run_claims(shared: &Shared, generation: u32, threads: usize) {
    loop {
        let cursor = shared.cursor.load(Ordering::Acquire);
        if (cursor >> 32) as u32 != generation {
            return;
        }
        // The count is read with its generation: the next step's caller may
        // already have written its own while this step's cursor still shows
        // (a claim from that count would run past this step's items).
        let tagged = shared.items.load(Ordering::Acquire);
        if (tagged >> 32) as u32 != generation {
            return;
        }
        let items = (tagged & u64::from(u32::MAX)) as usize;
        let start = (cursor & u64::from(u32::MAX)) as usize;
        if start >= items {
            return;
        }
        let chunk = items.div_ceil(threads * CHUNKS_PER_THREAD).max(1);
        let end = items.min(start + chunk);
        let claimed = (u64::from(generation) << 32) | end as u64;
        if shared
            .cursor
            .compare_exchange(cursor, claimed, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            continue;
        }
        let data = shared.data.load(Ordering::Relaxed) as *const ();
        let call = shared.call.load(Ordering::Relaxed);
        // SAFETY: `call` is the `Trampoline` the caller of this generation
        // stored before publishing it (the claim's Acquire orders those
        // stores before these loads), for its closure at `data`; the caller
        // cannot return, and so the closure cannot be dropped, before this
        // claimed chunk is counted in `done` below.
        let call: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(call) };
        let was_in_step = IN_STEP.with(|flag| flag.replace(true));
        // SAFETY: as above, `data` is the live closure `call` expects.
        let outcome = catch_unwind(AssertUnwindSafe(|| unsafe { call(data, start..end) }));
        IN_STEP.with(|flag| flag.set(was_in_step));
        if outcome.is_err() {
            shared.panicked.store(true, Ordering::Relaxed);
        }
        shared.done.fetch_add(end - start, Ordering::Release);
    }
}

/// A worker: waits for a step newer than the last it saw (spinning, then
/// parked), takes chunks of it, and waits again.
fn worker(shared: &Shared, threads: usize) {
    let mut seen = 0u32;
    loop {
        let mut spins = 0u32;
        let generation = loop {
            let generation = (shared.cursor.load(Ordering::Acquire) >> 32) as u32;
            if generation != seen {
                break generation;
            }
            spins = spins.saturating_add(1);
            if spins < SPINS_BEFORE_PARK {
                std::hint::spin_loop();
                continue;
            }
            let guard = shared.park.lock().unwrap_or_else(PoisonError::into_inner);
            shared.parked.fetch_add(1, Ordering::SeqCst);
            if (shared.cursor.load(Ordering::SeqCst) >> 32) as u32 == seen {
                drop(
                    shared
                        .wake
                        .wait(guard)
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
            shared.parked.fetch_sub(1, Ordering::SeqCst);
            spins = 0;
        };
        seen = generation;
        run_claims(shared, generation, threads);
    }
}

static POOL: OnceLock<Pool> = OnceLock::new();

/// Sizes the pool, once per process (its workers start here); the count in
/// force is returned, whatever was asked after the first call.
pub(crate) fn start(threads: usize) -> usize {
    POOL.get_or_init(|| Pool::new(threads.max(1))).threads()
}

/// The process's pool, started with one thread per CPU this process may use
/// if nothing started it before.
pub(crate) fn pool() -> &'static Pool {
    POOL.get_or_init(|| Pool::new(default_threads()))
}

/// The CPUs this process may use (its affinity mask and cgroup quota, as
/// `available_parallelism` reads them), at most the physical cores: a
/// second hyperthread per core adds no FMA units to these kernels.
pub(crate) fn default_threads() -> usize {
    let allowed = std::thread::available_parallelism().map_or(1, |n| n.get());
    allowed.min(num_cpus::get_physical().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every item is run exactly once, whatever the pool's size and the
    /// step's size, nested steps included.
    #[test]
    fn every_item_runs_exactly_once() {
        for threads in [1, 2, 3, 5] {
            let pool = Pool::new(threads);
            for items in [1, 2, 7, 64, 1000] {
                let counts: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
                pool.execute_chunked(items, |range| {
                    for i in range {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                        // A nested step runs inline.
                        pool.execute_chunked(3, |inner| assert!(inner.end <= 3));
                    }
                });
                assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
            }
        }
    }

    /// Steps of alternating sizes, back to back, while workers are still
    /// leaving the step before: every item of every step runs exactly once
    /// (a worker that read the next step's item count under this step's
    /// cursor claimed past the end, ran a chunk twice, and crashed
    /// `sentiment bench` about one run in three on an idle machine).
    #[test]
    fn back_to_back_steps_of_different_sizes_run_each_item_once() {
        let pool = Pool::new(3);
        for step in 0..20_000 {
            let items = [2, 300, 5, 97][step % 4];
            let counts: Vec<AtomicUsize> = (0..items).map(|_| AtomicUsize::new(0)).collect();
            pool.execute_chunked(items, |range| {
                assert!(range.end <= items, "{range:?} past {items}");
                for i in range {
                    counts[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                "step {step}"
            );
        }
    }

    /// A panicking chunk is raised by the caller once the step is over,
    /// and the pool serves the next step.
    #[test]
    fn a_panic_in_a_chunk_reaches_the_caller_and_the_pool_goes_on() {
        let pool = Pool::new(3);
        let caught = catch_unwind(AssertUnwindSafe(|| {
            pool.execute_chunked(100, |range| assert!(!range.contains(&57), "chunk 57"))
        }));
        assert!(caught.is_err());
        let total = AtomicUsize::new(0);
        pool.execute_chunked(100, |range| {
            total.fetch_add(range.len(), Ordering::Relaxed);
        });
        assert_eq!(total.load(Ordering::Relaxed), 100);
    }

    /// Workers that park between steps wake for the next one.
    #[test]
    fn parked_workers_wake_for_the_next_step() {
        let pool = Pool::new(2);
        for _ in 0..3 {
            // Long enough for the worker to give up spinning and park.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let total = AtomicUsize::new(0);
            pool.execute_chunked(1000, |range| {
                total.fetch_add(range.len(), Ordering::Relaxed);
            });
            assert_eq!(total.load(Ordering::Relaxed), 1000);
        }
    }
}
