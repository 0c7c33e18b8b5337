//! The clock timers and operation guards read: quanta's TSC-backed clock.
//!
//! A timer is two clock reads and one record. On the development VM (`clocksource=tsc`) a
//! `std::time::Instant::now()` costs ~29 ns (a vDSO `clock_gettime`) and a raw TSC read through
//! quanta ~11.5 ns, so a timer guard costs ~35 ns instead of ~63 ns (`benches/clock.rs`, same
//! run). quanta calibrates the TSC against the monotonic clock once per process, on the first
//! read (~0.7 ms here), and falls back to the monotonic clock itself where the TSC is missing or not invariant;
//! a reading that goes backwards (TSCs out of step across sockets) gives a zero duration, never a
//! huge one.

// loom-exempt: the calibrated clock is a process-wide static, outside every modelled protocol.
use std::sync::OnceLock;

// loom-exempt: as above.
static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();

#[inline(always)]
fn clock() -> &'static quanta::Clock {
    CLOCK.get_or_init(quanta::Clock::new)
}

/// A raw start reading (TSC ticks, or nanoseconds on the fallback clock).
#[inline(always)]
pub(crate) fn now() -> u64 {
    clock().raw()
}

/// Nanoseconds elapsed since the raw reading `start`.
#[inline(always)]
pub(crate) fn nanos_since(start: u64) -> u64 {
    let c = clock();
    c.delta_as_nanos(start, c.raw())
}

#[cfg(test)]
mod tests {
    #[test]
    fn agrees_with_std_instant() {
        let (start, std_start) = (super::now(), std::time::Instant::now());
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (ours, std) = (super::nanos_since(start), std_start.elapsed().as_nanos() as u64);
        // Read ours first: it may trail std by the time between the two reads, never lead much.
        assert!(ours <= std + 1_000_000 && ours * 100 >= std * 95, "quanta {ours} ns vs std {std} ns");
    }
}
