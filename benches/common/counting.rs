//! The counting global allocator of the memory benches (`memory.rs`, `cardinality.rs`): a
//! wrapper around `System` with relaxed atomic counters of allocation calls, bytes allocated and
//! bytes freed. A `realloc` counts as one call, a new block of the new size and the old one
//! freed. Each bench installs it with `#[global_allocator]`.

#![allow(dead_code)] // each bench reads the counters it needs

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

pub struct Counting;

static CALLS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the counters are plain atomics and never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc`'s contract.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            CALLS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged; the caller upholds `GlobalAlloc::alloc_zeroed`'s contract.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            CALLS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` through this wrapper.
        unsafe { System.dealloc(ptr, layout) };
        FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` was allocated by `System` with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            CALLS.fetch_add(1, Ordering::Relaxed);
            ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
            FREED.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

/// Allocation calls so far.
pub fn calls() -> u64 {
    CALLS.load(Ordering::SeqCst)
}

/// Bytes allocated so far.
pub fn allocated() -> u64 {
    ALLOCATED.load(Ordering::SeqCst)
}

/// Bytes freed so far.
pub fn freed() -> u64 {
    FREED.load(Ordering::SeqCst)
}

/// Bytes live now (allocated minus freed).
pub fn live() -> i64 {
    allocated() as i64 - freed() as i64
}
