//! The benches' clock, one copy for every bench that times itself (`mod common;`).
//!
//! By default a bench times with `Instant` (wall time). On a machine shared with other work,
//! wall time counts the time a thread spends descheduled, so `SHARDMETRICS_BENCH_CLOCK=cpu`
//! switches to the calling thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`): robust to
//! oversubscription, but it under-counts contention when threads were not actually running at
//! the same moment. Readings of the CPU clock compare only on the thread that took them.

// Each bench is its own crate and uses only some of these helpers.
#![allow(dead_code)]

use std::{
    hint::black_box,
    sync::OnceLock,
    time::{Duration, Instant},
};

/// Whether to time with the thread's CPU clock (`SHARDMETRICS_BENCH_CLOCK=cpu`) instead of
/// wall time.
pub fn cpu_clock() -> bool {
    static CPU: OnceLock<bool> = OnceLock::new();
    *CPU.get_or_init(|| std::env::var("SHARDMETRICS_BENCH_CLOCK").is_ok_and(|v| v == "cpu"))
}

/// The calling thread's CPU time.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_THREAD_CPUTIME_ID is supported on
    // every Linux this bench runs on, and a failure is turned into a panic below.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The bench clock's current reading: this thread's CPU time, or wall time since the first call.
/// Time a region as `let start = now(); …; now() - start`.
pub fn now() -> Duration {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    if cpu_clock() {
        thread_cpu_time()
    } else {
        base.elapsed()
    }
}

/// Times `iters` calls of `op(black_box(i))` on this thread, by [`now`]. `black_box(i)` keeps
/// the compiler from folding or hoisting the work across iterations. Never inlined (one call
/// per sample, not per iteration), so `valgrind --tool=callgrind --toggle-collect='*time_loop*'`
/// counts exactly the measured loop (`benches/callgrind.sh`).
#[inline(never)]
pub fn time_loop(iters: u64, op: impl Fn(u64)) -> Duration {
    let start = now();
    for i in 0..iters {
        op(black_box(i));
    }
    now() - start
}
