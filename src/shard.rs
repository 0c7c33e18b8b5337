//! Per-thread shards: single-writer cells, the thread-local binding, hand-off on thread exit.
//!
//! One job over ~750 lines: the per-thread cell storage and its ownership protocol (claim,
//! record, hand-off at thread exit) are one unsafe abstraction, kept in one file so every
//! SAFETY argument is next to the invariant it relies on.
//!
//! # Protocol
//!
//! * **Ownership.** A [`Shard`] is written by at most one thread at a time: the thread that
//!   *owns* it (`owned == true`). A thread takes ownership with a CAS `false → true`
//!   (**Acquire**) and gives it back at thread exit with a store of `false` (**Release**).
//!   The Release/Acquire pair makes every cell value the previous owner wrote visible to the
//!   next owner before its first `load + store`, so a re-used shard continues exactly where the
//!   exited thread stopped: nothing lost, nothing doubled.
//! * **Cells.** Each counter cell and histogram bucket is changed by its owner only, as a
//!   Relaxed `load` followed by a `store` of the new value. No `fetch_add` is needed because no
//!   other thread ever writes the cell; Relaxed suffices because the aggregator only needs each
//!   cell's own modification order (coherence) plus the happens-before edge that `flush()`
//!   establishes through its mutex.
//! * **Growth.** Cells live in chunks that are allocated on first touch by the owner and
//!   published once through [`LazySlice`] (Release CAS / Acquire load). Chunks never move or
//!   shrink while the shard lives, so the aggregator can read a cell while the owner allocates
//!   another chunk.
//! * **Histograms.** The owner updates a slot's `sum`, `min` and `max` *before* it stores the
//!   bucket increment with **Release**; the aggregator loads buckets with **Acquire** before it
//!   reads `sum`/`min`/`max`. So whenever a merged bucket count includes a value, the merged
//!   `min`/`max` cover it (min ≤ every quantile ≤ max), and the count is defined as the sum of
//!   the buckets read, so count == Σ buckets in every snapshot.
//! * **List.** Shards form an append-only, lock-free intrusive list; a shard is never freed
//!   while its registry lives, and thread-locals keep their shard alive by `Arc` past that.
//! * **Thread exit.** The thread-local [`LocalShards`] releases every shard it owns in its
//!   destructor. Rust does not promise that destructor runs (the main thread's, for one); the
//!   shard's values are still read by the aggregator, it is merely never re-used. A record made
//!   after the thread-local was destroyed (from another thread-local's destructor) takes a shard
//!   for the duration of that one record ([`with_shard`]'s slow path), so it is neither lost nor
//!   a panic.

use std::{cell::Cell, cell::RefCell, ptr};

use crate::{
    buckets, exp_buckets,
    sync::{shard_thread_local, Arc, AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, LazySlice, Ordering},
};

/// Cells per cache line group: 16 × 8 B = 128 B, the pair of lines x86-64's spatial prefetcher
/// fetches together (the reason crossbeam's `CachePadded` is 128 B there).
#[cfg(not(shardmetrics_loom))]
pub(crate) const LINE: usize = 16;
#[cfg(shardmetrics_loom)]
pub(crate) const LINE: usize = 1;

/// Counter cells in chunk 0; chunk `k` holds `COUNTER_BASE << k`.
#[cfg(not(shardmetrics_loom))]
const COUNTER_BASE: usize = 64;
#[cfg(shardmetrics_loom)]
const COUNTER_BASE: usize = 1;
#[cfg(not(shardmetrics_loom))]
pub(crate) const COUNTER_CHUNKS: usize = 26;
#[cfg(shardmetrics_loom)]
pub(crate) const COUNTER_CHUNKS: usize = 3;

/// Histogram slots in chunk 0; chunk `k` holds `HIST_BASE << k`.
#[cfg(not(shardmetrics_loom))]
const HIST_BASE: usize = 4;
#[cfg(shardmetrics_loom)]
const HIST_BASE: usize = 1;
#[cfg(not(shardmetrics_loom))]
pub(crate) const HIST_CHUNKS: usize = 22;
#[cfg(shardmetrics_loom)]
pub(crate) const HIST_CHUNKS: usize = 2;

/// Bucket groups per histogram slot: one per power of two of a `u64` (`buckets::group_count`).
const GROUPS: usize = 64;

/// 128-byte aligned run of cells, so two shards' cells never share a cache line pair.
#[repr(align(128))]
pub(crate) struct Line(pub(crate) [AtomicU64; LINE]);

impl Line {
    fn new() -> Self {
        Line(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

/// Whether a `Line` is exactly its `LINE` cells (true for std's 8-byte atomics and
/// `LINE = 16`: 128 bytes, the alignment), so a chunk of lines is one array of cells.
const LINES_ARE_CONTIGUOUS: bool = std::mem::size_of::<Line>() == LINE * std::mem::size_of::<AtomicU64>();

/// Where an item sits in chunked storage: chunk and offset within the chunk. Computed once at
/// registration; the hot path only indexes.
///
/// A bare `Loc` (gauges) is indexed with bounds checks. The shard's unchecked indexing takes
/// only the typed locations [`CounterLoc`] and [`HistLoc`], which can be made only by their
/// checked constructors, so the bounds they rely on hold by construction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    chunk: u8,
    off: u32,
}

impl Loc {
    pub(crate) fn chunk(self) -> usize {
        usize::from(self.chunk)
    }

    pub(crate) fn off(self) -> usize {
        self.off as usize
    }

    /// Location of the `index`-th item of chunked storage whose chunk `k` holds `base << k`
    /// items (`base ≤ COUNTER_BASE`), or `None` past `chunks` chunks (`chunks ≤ COUNTER_CHUNKS`).
    pub(crate) fn gauge(index: usize, base: usize, chunks: usize) -> Option<Loc> {
        debug_assert!(base <= COUNTER_BASE && chunks <= COUNTER_CHUNKS);
        let l = Loc::of(index, base);
        (usize::from(l.chunk) < chunks).then_some(l)
    }

    fn of(index: usize, base: usize) -> Loc {
        // chunk k covers [base·(2^k − 1), base·(2^(k+1) − 1)).
        let k = (usize::BITS - 1 - (index / base + 1).leading_zeros()) as usize;
        let off = index - base * ((1 << k) - 1);
        Loc { chunk: k as u8, off: off as u32 }
    }

    fn index(self, base: usize) -> usize {
        base * ((1 << self.chunk) - 1) + self.off as usize
    }
}

/// The location of a counter cell in every shard.
///
/// Invariant (relied on by the unchecked indexing in [`Shard::counter_cell`]): made only by
/// [`CounterLoc::new`], so `chunk < COUNTER_CHUNKS` and `off < COUNTER_BASE << chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CounterLoc(Loc);

impl CounterLoc {
    /// The chunk this location is in (loom models check which chunk a series lands in).
    #[cfg(shardmetrics_loom)]
    pub(crate) fn chunk(self) -> usize {
        self.0.chunk()
    }

    /// Location of the `index`-th counter cell, or `None` past the last chunk.
    pub(crate) fn new(index: usize) -> Option<CounterLoc> {
        let l = Loc::of(index, COUNTER_BASE);
        (usize::from(l.chunk) < COUNTER_CHUNKS).then_some(CounterLoc(l))
    }

    /// The dense counter number this location was made from ([`CounterLoc::new`]'s inverse).
    pub(crate) fn index(self) -> usize {
        self.0.index(COUNTER_BASE)
    }
}

/// The location of a histogram slot in every shard.
///
/// Invariant (relied on by the unchecked indexing in [`Shard::hist_slot`]): made only by
/// [`HistLoc::new`], so `chunk < HIST_CHUNKS` and `off < HIST_BASE << chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct HistLoc(Loc);

impl HistLoc {
    /// The chunk this location is in (loom models check which chunk a series lands in).
    #[cfg(shardmetrics_loom)]
    pub(crate) fn chunk(self) -> usize {
        self.0.chunk()
    }

    /// Location of the `index`-th histogram slot, or `None` past the last chunk.
    pub(crate) fn new(index: usize) -> Option<HistLoc> {
        let l = Loc::of(index, HIST_BASE);
        (usize::from(l.chunk) < HIST_CHUNKS).then_some(HistLoc(l))
    }

    /// The dense histogram number this location was made from ([`HistLoc::new`]'s inverse).
    pub(crate) fn index(self) -> usize {
        self.0.index(HIST_BASE)
    }
}

#[inline(always)]
const fn counter_lines(chunk: usize) -> usize {
    (COUNTER_BASE << chunk).div_ceil(LINE)
}

#[inline(always)]
const fn hist_slots(chunk: usize) -> usize {
    HIST_BASE << chunk
}

/// A counter cell at or above this value is saturated: the merge reads the counter's total as
/// `u64::MAX` (a counter never decreases, so it must not wrap, which Prometheus would read as a
/// reset). [`single_writer_add`] saturates a cell by storing this value instead of adding past
/// it. [`single_writer_inc`] needs no check: from below, a cell reaches it only by 2^63
/// increments (292 years at one per nanosecond); from it, as many again before it could wrap.
pub(crate) const SATURATED: u64 = 1 << 63;

/// Adds 1 to a cell this thread owns: a Relaxed load and a store, no read-modify-write, and no
/// saturation check (see [`SATURATED`] for why none is needed).
#[inline(always)]
pub(crate) fn single_writer_inc(cell: &AtomicU64) {
    // Relaxed: the calling thread is the cell's only writer (it owns the shard), so the load
    // returns the latest value; readers need only coherence (see the module docs).
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
}

/// Adds `n` to a cell this thread owns: a Relaxed load, a compare and a store, no
/// read-modify-write. Saturates the cell (see [`SATURATED`]) instead of adding past it; returns
/// `false` when it did, so the caller can count the amount that did not fit.
#[inline(always)]
#[must_use = "a saturated add is counted by the caller"]
pub(crate) fn single_writer_add(cell: &AtomicU64, n: u64) -> bool {
    // Relaxed: as in `single_writer_inc`.
    let old = cell.load(Ordering::Relaxed);
    if n < SATURATED.saturating_sub(old) {
        cell.store(old + n, Ordering::Relaxed);
        true
    } else {
        saturate(cell, old)
    }
}

#[cold]
#[inline(never)]
fn saturate(cell: &AtomicU64, old: u64) -> bool {
    if old < SATURATED {
        // Relaxed: as in `single_writer_inc`.
        cell.store(SATURATED, Ordering::Relaxed);
    }
    false
}

/// One thread's histogram state for one series.
pub(crate) struct HistSlot {
    /// Saturating sum of recorded values.
    pub(crate) sum: AtomicU64,
    /// Bitwise NOT of the minimum, so a zeroed slot means "no minimum yet" and both bounds are
    /// maintained with the same `max` update.
    pub(crate) min_inv: AtomicU64,
    pub(crate) max: AtomicU64,
    /// Values recorded into this slot (wrapping). Stored last, with Release: a tick that sees
    /// a count also sees every bucket increment it counts, so a tick whose counts summed over
    /// the shards equal the last merge's can reuse that merge (idle histograms cost one load
    /// per shard instead of a scan of their buckets).
    pub(crate) count: AtomicU64,
    /// Precision the groups were allocated with (set before the first group is published).
    precision: AtomicUsize,
    /// Bucket group `g` holds the cells of the power of two `2^g ..= 2^(g+1)` (bucket indices
    /// `g·2^p ..= g·2^p + 2^p + 1`, see `buckets`), allocated on first use.
    groups: [LazySlice<AtomicU64>; GROUPS],
}

impl HistSlot {
    fn new() -> Self {
        HistSlot {
            sum: AtomicU64::new(0),
            min_inv: AtomicU64::new(0),
            max: AtomicU64::new(0),
            count: AtomicU64::new(0),
            precision: AtomicUsize::new(0),
            groups: std::array::from_fn(|_| LazySlice::new()),
        }
    }

    /// Records `value` at precision `p`. Called by the owning thread only.
    ///
    /// # Safety
    /// `p` is this slot's precision: every call of `record`, [`group`](Self::group) and
    /// [`allocated_bytes`](Self::allocated_bytes) on one slot passes the same `p` (the
    /// series' precision, fixed at registration in `Store::Histogram`), because the bucket
    /// groups are allocated with `buckets::group_len(p)` cells and indexed without bounds checks.
    #[inline(always)]
    pub(crate) unsafe fn record(&self, value: u64, p: u8) {
        debug_assert!((buckets::MIN_PRECISION..=buckets::MAX_PRECISION).contains(&p));
        let (g, within) = exp_buckets::octave_position(value, p);
        debug_assert!(g < GROUPS && within < buckets::group_len(p));
        // SAFETY: `g = msb(value) ≤ 63 < GROUPS` (`octave_position` returns the power of two of
        // a `u64`, 0 for the value zero).
        let slot = unsafe { self.groups.get_unchecked(g) };
        // SAFETY: every group of this slot has `group_len(p)` cells (the caller's contract).
        let group = match unsafe { slot.get(buckets::group_len(p)) } {
            Some(group) => group,
            None => self.grow(g, p),
        };
        // Relaxed on min/max/sum: single writer; their visibility to the aggregator is carried
        // by the Release store of the bucket below.
        if !value > self.min_inv.load(Ordering::Relaxed) {
            self.min_inv.store(!value, Ordering::Relaxed);
        }
        if value > self.max.load(Ordering::Relaxed) {
            self.max.store(value, Ordering::Relaxed);
        }
        let s = &self.sum;
        s.store(s.load(Ordering::Relaxed).saturating_add(value), Ordering::Relaxed);
        // SAFETY: `within ≤ 2^p + 1 < group_len(p)` (`octave_position`'s positions, for the
        // precisions `0..=8` the registry accepts, the only source of `p`), the length every
        // group of this slot is allocated with.
        let cell = unsafe { group.get_unchecked(within) };
        // Release: pairs with the aggregator's Acquire load of this bucket, so a merged count
        // that includes this value also sees the min/max/sum updates above.
        cell.store(cell.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
        // Release: pairs with the aggregator's Acquire load of the count (see `count`).
        let n = &self.count;
        n.store(n.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    #[cold]
    #[inline(never)]
    fn grow(&self, g: usize, p: u8) -> &[AtomicU64] {
        // Relaxed: published by the group's Release CAS, which follows in program order.
        self.precision.store(usize::from(p), Ordering::Relaxed);
        let len = buckets::group_len(p);
        // SAFETY: every group of this slot has `group_len(p)` cells (`record`'s contract).
        unsafe { self.groups[g].get_or_init(len, || (0..len).map(|_| AtomicU64::new(0)).collect()) }
    }

    /// The bucket group `g` if any value landed in it (aggregator side): the cells of bucket
    /// indices `buckets::group_start(g, p) ..` (`buckets::group_len(p)` of them).
    ///
    /// # Safety
    /// As for [`record`](Self::record): `p` is this slot's precision.
    pub(crate) unsafe fn group(&self, g: usize, p: u8) -> Option<&[AtomicU64]> {
        // SAFETY: every group of this slot has `group_len(p)` cells (the caller's contract).
        unsafe { self.groups.get(g)?.get(buckets::group_len(p)) }
    }

    /// Bytes allocated for bucket groups (memory accounting).
    ///
    /// # Safety
    /// As for [`record`](Self::record): `p` is this slot's precision.
    pub(crate) unsafe fn allocated_bytes(&self, p: u8) -> usize {
        // SAFETY: the caller's contract.
        (0..GROUPS).filter(|&g| unsafe { self.group(g, p) }.is_some()).count() * 8 * buckets::group_len(p)
    }
}

impl Drop for HistSlot {
    fn drop(&mut self) {
        let p = self.precision.load(Ordering::Relaxed);
        for g in &mut self.groups {
            // SAFETY: `precision` was stored (before the first group was published) with the
            // `p` every group of this slot was allocated with (`group_len(p)` cells); no group
            // exists otherwise, and `free` on an empty slot reads no length.
            unsafe { g.free(buckets::group_len(p as u8)) };
        }
    }
}

/// One thread's cells for every series of one registry.
pub(crate) struct Shard {
    owned: AtomicBool,
    /// Next shard in the registry's list (an `Arc::into_raw` pointer owned by the list).
    next: AtomicPtr<Shard>,
    counters: [LazySlice<Line>; COUNTER_CHUNKS],
    hists: [LazySlice<HistSlot>; HIST_CHUNKS],
}

impl Shard {
    fn new_owned() -> Shard {
        Shard {
            owned: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
            counters: std::array::from_fn(|_| LazySlice::new()),
            hists: std::array::from_fn(|_| LazySlice::new()),
        }
    }

    /// The counter cell at `loc` (owner side; allocates the chunk on first touch).
    ///
    /// Compiles to: one load of the chunk pointer, a null test (cold branch to allocate), one
    /// address computation. No bounds checks: `Loc`'s invariant covers them.
    #[inline(always)]
    pub(crate) fn counter_cell(&self, loc: CounterLoc) -> &AtomicU64 {
        let (c, off) = (usize::from(loc.0.chunk), loc.0.off as usize);
        debug_assert!(c < COUNTER_CHUNKS && off < COUNTER_BASE << c);
        // SAFETY: `c < COUNTER_CHUNKS` by `CounterLoc`'s invariant.
        let chunk = unsafe { self.counters.get_unchecked(c) };
        // SAFETY: counter chunk `c` is always used with `counter_lines(c)` lines.
        let lines = match unsafe { chunk.get(counter_lines(c)) } {
            Some(lines) => lines,
            None => self.grow_counters(c),
        };
        if LINES_ARE_CONTIGUOUS {
            // SAFETY: `off < COUNTER_BASE << c ≤ lines.len() * LINE` by `Loc`'s invariant (the
            // chunk was allocated with `counter_lines(c)` lines of `LINE` cells), and a `Line`
            // is exactly `LINE` cells with no padding (`LINES_ARE_CONTIGUOUS`), so the chunk
            // is one array of `lines.len() * LINE` cells and cell `off` is in it. This spares
            // the `off / LINE`, `off % LINE` split (four instructions) on every record.
            unsafe { &*lines.as_ptr().cast::<AtomicU64>().add(off) }
        } else {
            // SAFETY: as above, indexing line by line (loom's atomics are larger than 8 bytes).
            unsafe { lines.get_unchecked(off / LINE).0.get_unchecked(off % LINE) }
        }
    }

    #[cold]
    #[inline(never)]
    fn grow_counters(&self, c: usize) -> &[Line] {
        // SAFETY: counter chunk `c` is always used with `counter_lines(c)` lines.
        unsafe {
            self.counters[c].get_or_init(counter_lines(c), || (0..counter_lines(c)).map(|_| Line::new()).collect())
        }
    }

    /// The histogram slot at `loc` (owner side; allocates the chunk on first touch).
    ///
    /// Compiles to: one load of the chunk pointer, a null test (cold branch to allocate), one
    /// address computation. No bounds checks: `Loc`'s invariant covers them.
    #[inline(always)]
    pub(crate) fn hist_slot(&self, loc: HistLoc) -> &HistSlot {
        let (c, off) = (usize::from(loc.0.chunk), loc.0.off as usize);
        debug_assert!(c < HIST_CHUNKS && off < hist_slots(c));
        // SAFETY: `c < HIST_CHUNKS` by `HistLoc`'s invariant.
        let chunk = unsafe { self.hists.get_unchecked(c) };
        // SAFETY: histogram chunk `c` is always used with `hist_slots(c)` slots.
        let slots = match unsafe { chunk.get(hist_slots(c)) } {
            Some(slots) => slots,
            None => self.grow_hists(c),
        };
        // SAFETY: `off < HIST_BASE << c = slots.len()` by `HistLoc`'s invariant (the chunk was
        // allocated with `hist_slots(c)` slots).
        unsafe { slots.get_unchecked(off) }
    }

    #[cold]
    #[inline(never)]
    fn grow_hists(&self, c: usize) -> &[HistSlot] {
        // SAFETY: histogram chunk `c` is always used with `hist_slots(c)` slots.
        unsafe { self.hists[c].get_or_init(hist_slots(c), || (0..hist_slots(c)).map(|_| HistSlot::new()).collect()) }
    }

    /// Adds every counter cell of this shard to `totals` (indexed by counter number), chunk by
    /// chunk (aggregator side).
    pub(crate) fn add_counters_into(&self, totals: &mut [u64]) {
        let mut base = 0;
        for c in 0..COUNTER_CHUNKS {
            let len = COUNTER_BASE << c;
            if base >= totals.len() {
                break;
            }
            // SAFETY: counter chunk `c` is always used with `counter_lines(c)` lines.
            if let Some(lines) = unsafe { self.counters[c].get(counter_lines(c)) } {
                let end = (base + len).min(totals.len());
                let dst = &mut totals[base..end];
                let cells = lines.iter().flat_map(|l| l.0.iter());
                for (d, cell) in dst.iter_mut().zip(cells) {
                    // Relaxed: see `read_counter`.
                    // A saturated cell saturates the total; otherwise the sum saturates (a
                    // total never decreases, which a wrap would look like to Prometheus).
                    let v = cell.load(Ordering::Relaxed);
                    *d = if v >= SATURATED { u64::MAX } else { d.saturating_add(v) };
                }
            }
            base += len;
        }
    }

    /// The histogram slot at `loc` if its chunk exists (aggregator side).
    pub(crate) fn read_hist(&self, loc: HistLoc) -> Option<&HistSlot> {
        let c = usize::from(loc.0.chunk);
        // SAFETY: histogram chunk `c` is always used with `hist_slots(c)` slots.
        unsafe { self.hists[c].get(hist_slots(c)) }.map(|s| &s[loc.0.off as usize])
    }

    /// Bytes of cell storage this shard has allocated (memory accounting, not the hot path).
    ///
    /// # Safety
    /// `precisions[i]` is the precision of histogram number `i` (the one its records use; see
    /// [`HistSlot::record`]).
    pub(crate) unsafe fn allocated_bytes(&self, precisions: &[u8]) -> usize {
        let mut n = std::mem::size_of::<Shard>();
        for c in 0..COUNTER_CHUNKS {
            // SAFETY: counter chunk `c` is always used with `counter_lines(c)` lines.
            if unsafe { self.counters[c].get(counter_lines(c)) }.is_some() {
                n += counter_lines(c) * std::mem::size_of::<Line>();
            }
        }
        for c in 0..HIST_CHUNKS {
            // SAFETY: histogram chunk `c` is always used with `hist_slots(c)` slots.
            if let Some(slots) = unsafe { self.hists[c].get(hist_slots(c)) } {
                n += std::mem::size_of_val(slots);
                for (off, slot) in slots.iter().enumerate() {
                    let index = HistLoc(Loc { chunk: c as u8, off: off as u32 }).index();
                    if let Some(&p) = precisions.get(index) {
                        // SAFETY: `p` is this slot's precision (the caller's contract).
                        n += unsafe { slot.allocated_bytes(p) };
                    }
                }
            }
        }
        n
    }

    /// Gives ownership back (thread exit, or the end of a one-off record).
    fn release(&self) {
        // Release: pairs with the Acquire CAS in `ShardList::claim`; the next owner sees every
        // cell value this thread stored.
        self.owned.store(false, Ordering::Release);
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        for c in 0..COUNTER_CHUNKS {
            // SAFETY: counter chunk `c` is always used with `counter_lines(c)` lines.
            unsafe { self.counters[c].free(counter_lines(c)) };
        }
        for c in 0..HIST_CHUNKS {
            // SAFETY: histogram chunk `c` is always used with `hist_slots(c)` slots.
            unsafe { self.hists[c].free(hist_slots(c)) };
        }
    }
}

/// A registry's shards: an append-only, lock-free list. Shards are re-used, never removed,
/// so its length is the peak number of threads that recorded at once.
pub(crate) struct ShardList {
    head: AtomicPtr<Shard>,
    len: AtomicUsize,
}

impl ShardList {
    pub(crate) fn new() -> Self {
        ShardList { head: AtomicPtr::new(ptr::null_mut()), len: AtomicUsize::new(0) }
    }

    /// Takes ownership of a free shard, or allocates and publishes a new one.
    pub(crate) fn claim(&self) -> Arc<Shard> {
        for shard in self.iter() {
            // Acquire: pairs with `Shard::release` of the previous owner.
            if !shard.owned.load(Ordering::Relaxed)
                && shard.owned.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok()
            {
                // SAFETY: `shard` points at a live list node whose strong count the list owns;
                // incrementing it hands the caller its own reference.
                return unsafe { clone_arc(shard) };
            }
        }
        let shard = Arc::new(Shard::new_owned());
        let raw = Arc::into_raw(shard.clone()) as *mut Shard;
        let mut head = self.head.load(Ordering::Acquire);
        loop {
            // Relaxed: `next` is published by the Release CAS below.
            shard.next.store(head, Ordering::Relaxed);
            // Release: publishes the node (and its `next`) to `iter`'s Acquire loads.
            match self.head.compare_exchange_weak(head, raw, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(h) => head = h,
            }
        }
        self.len.fetch_add(1, Ordering::Relaxed);
        shard
    }

    /// Every shard ever created for this registry, owned or free.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Shard> {
        // Acquire: pairs with the Release CAS in `claim`.
        let mut p = self.head.load(Ordering::Acquire);
        std::iter::from_fn(move || {
            if p.is_null() {
                return None;
            }
            // SAFETY: every pointer in the list came from `Arc::into_raw` and the list holds
            // that strong reference until `Drop` (which needs `&mut self`), so the node is live
            // for the `&self` borrow the iterator is tied to.
            let shard = unsafe { &*p };
            // Acquire: `next` was written before the node was published.
            p = shard.next.load(Ordering::Acquire);
            Some(shard)
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }
}

impl Drop for ShardList {
    fn drop(&mut self) {
        let mut p = self.head.load(Ordering::Acquire);
        while !p.is_null() {
            // SAFETY: `p` came from `Arc::into_raw` in `claim`; the list owns that reference
            // and gives it up here exactly once (we read `next` before dropping).
            let shard = unsafe { Arc::from_raw(p as *const Shard) };
            p = shard.next.load(Ordering::Acquire);
            drop(shard);
        }
    }
}

/// Makes an owned `Arc` from a reference to an `Arc`-allocated shard.
///
/// # Safety
/// `shard` must point into an allocation made by `Arc::new` whose strong count stays ≥ 1 for
/// the duration of the call.
unsafe fn clone_arc(shard: &Shard) -> Arc<Shard> {
    let p = shard as *const Shard;
    // SAFETY: per the contract, `p` is the data pointer of a live `Arc<Shard>`.
    unsafe {
        Arc::increment_strong_count(p);
        Arc::from_raw(p)
    }
}

/// The calling thread's shards, one per registry it has recorded into. Its destructor hands
/// them back at thread exit.
struct LocalShards {
    bound: RefCell<Vec<(u64, Arc<Shard>)>>,
}

impl LocalShards {
    const fn new() -> Self {
        LocalShards { bound: RefCell::new(Vec::new()) }
    }

    /// The shard bound to registry `id`, claiming one on first use; updates [`CACHE`].
    fn bind(&self, id: u64, shards: &ShardList) -> *const Shard {
        let mut bound = self.bound.borrow_mut();
        let p = match bound.iter().find(|(i, _)| *i == id) {
            Some((_, s)) => Arc::as_ptr(s),
            None => {
                // Forget shards of registries that are gone: a list holds a reference to each
                // of its shards while it lives, so a count of 1 means only this binding is left
                // (and, ids never being re-used, nothing can look it up again). Without this a
                // long-lived thread kept one shard per dropped registry it had recorded into.
                bound.retain(|(_, s)| Arc::strong_count(s) > 1);
                let s = shards.claim();
                let p = Arc::as_ptr(&s);
                bound.push((id, s));
                p
            }
        };
        // `try_with`: under loom thread-locals are torn down in any order (std never destroys
        // `CACHE`, it has no destructor); a binding made during teardown is simply not cached.
        let _ = CACHE.try_with(|c| c.set((id, p)));
        p
    }
}

impl Drop for LocalShards {
    fn drop(&mut self) {
        // Forget the cached pointer first: a record made after this point (from another
        // thread-local's destructor) must not use a shard this thread no longer owns.
        let _ = CACHE.try_with(|c| c.set((0, ptr::null())));
        for (_, shard) in self.bound.get_mut().drain(..) {
            shard.release();
        }
    }
}

shard_thread_local! {
    static LOCAL: LocalShards = LocalShards::new();
}

shard_thread_local! {
    /// `(registry id, shard)` of the last binding: the fast path. It has no destructor, so
    /// reading it is a plain thread-local load (no lazy-init or destructor-state check). It is
    /// non-zero only while `LOCAL` is alive and holds that shard's `Arc` (set by `bind`,
    /// cleared first thing in `LocalShards::drop`).
    static CACHE: Cell<(u64, *const Shard)> = Cell::new((0, ptr::null()));
}

/// Releases a temporarily owned shard, even if the record unwinds.
struct Temporary(Arc<Shard>);

impl Drop for Temporary {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Runs `f` on the calling thread's shard of the registry `id` (whose shards are `shards`),
/// binding one on the thread's first record into that registry.
///
/// This is the general (and slow-path) entry; the recording fast paths call
/// [`with_cached_shard`] first and come here from a cold function of their own only when it
/// returns `None`. `f` is called once, on a [`CurrentShard`].
#[inline]
pub(crate) fn with_shard<R>(id: u64, shards: &ShardList, f: impl FnOnce(&Shard) -> R) -> R {
    let current = CurrentShard::get(id, shards);
    let r = f(current.shard());
    current.done();
    r
}

/// The recording fast path: runs `f` on the calling thread's shard of registry `id` if this
/// thread has it bound and cached, else returns `None` without running `f` (the caller then
/// calls [`with_shard`] from a cold, out-of-line function that takes `f`'s inputs as
/// arguments).
///
/// Compiles to one destructor-free thread-local load of `(id, shard)`, one compare and a
/// branch, then `f` inlined. Nothing else: the slow paths (binding, a record after the
/// binding was destroyed) leave no state here to test or drop. The `Option<Temporary>`
/// out-parameter this replaced lived in a stack slot (drop glue must survive unwinding) that
/// every record zeroed, re-read and tested: five instructions and two stack stores per
/// record. Passing `f` itself to the cold path is no better: its captures are then stored to
/// the stack on every record. Registry ids start at 1 and are never re-used, so the cache
/// can never match a different registry.
#[inline(always)]
pub(crate) fn with_cached_shard<R>(id: u64, f: impl FnOnce(&Shard) -> R) -> Option<R> {
    // Infallible under std (no destructor, const-initialised: a plain `%fs`-relative load);
    // under loom `CACHE` may already be torn down at thread exit, which takes the slow path.
    let (cached, p) = CACHE.try_with(Cell::get).unwrap_or((0, ptr::null()));
    if cached == id {
        // SAFETY: `p` is the shard bound to this thread for registry `id`, kept alive by the
        // `Arc` in this thread's `LOCAL.bound`, which is dropped only by `LocalShards::drop`,
        // which clears the cache first and cannot run while this thread is in `f`.
        Some(f(unsafe { &*p }))
    } else {
        None
    }
}

/// The calling thread's shard of one registry for one record ([`with_shard`]'s state). Not
/// `Drop` on purpose: drop glue would keep it in a stack slot.
struct CurrentShard {
    p: *const Shard,
    /// Owned for this one record (see [`slow_shard`]); given back by `done`.
    temporary: bool,
}

impl CurrentShard {
    #[inline(always)]
    fn get(id: u64, shards: &ShardList) -> CurrentShard {
        // Infallible under std (no destructor, const-initialised: a plain `%fs`-relative
        // load); under loom `CACHE` may already be torn down at thread exit (slow path).
        let (cached, p) = CACHE.try_with(Cell::get).unwrap_or((0, ptr::null()));
        let (p, temporary) = if cached == id { (p, false) } else { slow_shard(id, shards) };
        CurrentShard { p, temporary }
    }

    #[inline(always)]
    fn shard(&self) -> &Shard {
        // SAFETY: `p` is either the shard bound to this thread for this registry (cached or
        // just bound) — kept alive by the `Arc` in this thread's `LOCAL.bound`, which is
        // dropped only by `LocalShards::drop`, which clears the cache first and cannot run
        // while this thread is recording — or (`temporary`) a shard whose strong count and
        // ownership this value holds until `done`.
        unsafe { &*self.p }
    }

    /// Ends the record. (If the record unwound before this, a temporary shard would stay
    /// owned and never be re-used; its values are still read by the aggregator. A record
    /// panics only on allocation failure.)
    #[inline(always)]
    fn done(self) {
        if self.temporary {
            // SAFETY: `p` came from `slow_shard` with `temporary == true`; `self` is consumed,
            // so it is released once.
            unsafe { release_temporary(self.p) };
        }
    }
}

/// Owns a shard for one record: the path a record takes when this thread's binding is already
/// destroyed (driven directly by the loom models, whose thread-local teardown order varies).
#[cfg(shardmetrics_loom)]
pub(crate) fn with_temporary_shard<R>(shards: &ShardList, f: impl FnOnce(&Shard) -> R) -> R {
    // The same claim and release as `slow_shard`'s temporary branch and `CurrentShard::done`.
    let current = CurrentShard { p: claim_temporary(shards), temporary: true };
    let r = f(current.shard());
    current.done();
    r
}

/// Claims a shard for one record, keeping the `Arc`'s strong count in the returned pointer
/// (given back by [`release_temporary`]).
fn claim_temporary(shards: &ShardList) -> *const Shard {
    Arc::into_raw(shards.claim())
}

/// First record of this thread into registry `id` (binds a shard and caches it; returns
/// `false`), or a record after this thread's `LOCAL` was destroyed: claims a shard for this
/// one record and returns `true` with a strong count the caller gives back through
/// [`release_temporary`].
#[cold]
#[inline(never)]
fn slow_shard(id: u64, shards: &ShardList) -> (*const Shard, bool) {
    match LOCAL.try_with(|l| l.bind(id, shards)) {
        Ok(p) => (p, false),
        Err(_) => (claim_temporary(shards), true),
    }
}

/// Gives back a shard claimed by [`slow_shard`] for one record.
///
/// # Safety
/// `p` must come from `slow_shard` returning `(p, true)`, and be released exactly once.
#[cold]
#[inline(never)]
unsafe fn release_temporary(p: *const Shard) {
    // SAFETY: per the contract, `p` is an `Arc::into_raw` pointer whose strong count we own.
    let t = Temporary(unsafe { Arc::from_raw(p) });
    drop(t);
}
