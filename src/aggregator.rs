//! The one merging thread: every `interval` (or on `flush()`), sum every shard into an
//! immutable [`Snapshot`] and publish it.
//!
//! # Synchronization
//! A tick holds the aggregator mutex from the first shard read to the publish, so ticks from
//! the background thread and from concurrent `flush()` callers are serialised and published in
//! sequence order. Taking that mutex is also the happens-before edge `flush()` promises: a
//! record that happens-before `flush()` happens-before the mutex acquisition, hence before the
//! shard reads, so coherence guarantees the reads see it (Relaxed cell loads suffice).
//! Histogram buckets are loaded with Acquire before the slot's sum/min/max (see `shard.rs`).

use std::time::{Duration, Instant, SystemTime};

use crate::{
    buckets,
    catalogue::View,
    history::{Base, Bases, HistPoints, Level, Point},
    shard::HistLoc,
    snapshot::{HistogramSnapshot, Snapshot},
    store::{Core, Store},
    sync::{lock, Arc, Ordering},
};

/// Runs at the start of every tick, on the ticking thread, before the shards are read: the
/// place to sample external state into gauges and counters (process resources, pool sizes).
/// Whatever it records is in the snapshot of the same tick.
///
/// It runs under the aggregator mutex: it must not call [`crate::Registry::flush`] (that would
/// deadlock) and should be quick, since it delays the tick (never a recording thread).
pub trait Collector: Send {
    fn collect(&mut self);
}

impl<F: FnMut() + Send> Collector for F {
    fn collect(&mut self) {
        self()
    }
}

/// Runs after every publish with the new snapshot, on the ticking thread: the place for
/// derived state (alert rules, trend detection). Same rules as [`Collector`]: no `flush()`,
/// be quick; hand slow work (notifications) to a thread of your own. Hold metric handles, not a
/// `Registry` clone: the registry owns its observers, so a clone inside one keeps the
/// aggregator thread alive forever.
pub trait Observer: Send {
    fn observe(&mut self, snapshot: &Arc<Snapshot>);
}

impl<F: FnMut(&Arc<Snapshot>) + Send> Observer for F {
    fn observe(&mut self, snapshot: &Arc<Snapshot>) {
        self(snapshot)
    }
}

/// State carried from one tick to the next (previous totals for deltas, scratch buffers).
pub(crate) struct Aggregator {
    pub(crate) collectors: Vec<Box<dyn Collector>>,
    pub(crate) observers: Vec<Box<dyn Observer>>,
    seq: u64,
    last: Instant,
    /// The previous tick's raw cumulative counter totals, by counter number (shared with that
    /// tick's snapshot and with window levels that placed a boundary there).
    raw: std::sync::Arc<[u64]>,
    /// The previous tick's totals as published (raw minus idle-expiry bases; the same array
    /// as `raw` when no base applied): the next snapshot's deltas start from them.
    shown: std::sync::Arc<[u64]>,
    /// Per histogram index: the last merge and the slot counts it saw (`None` before the first
    /// merge). The previous cumulative value gives the per-tick deltas; an unchanged count
    /// lets a tick reuse the merge (its buckets are shared, not copied).
    last_hists: Vec<Option<LastHist>>,
    scratch: Vec<u64>,
    windows: std::sync::Arc<[Duration]>,
    /// One level of checkpoints per window (see `history`), shared with snapshots.
    levels: std::sync::Arc<Vec<Level>>,
    /// The previous tick: where a level places its next boundary.
    prev: Point,
    /// Idle-series expiry (see `expired`): ticks without change per series id, whether the
    /// series is hidden, and the cumulative value it restarts from.
    expire_after: Option<u32>,
    idle: Vec<u32>,
    hidden: Vec<bool>,
    bases: Bases,
}

/// A histogram's last merge.
struct LastHist {
    /// The sum over shards of the slot's record counts when it was merged.
    version: u64,
    /// Raw cumulative (shared with window checkpoints).
    merged: std::sync::Arc<HistogramSnapshot>,
}

impl Aggregator {
    pub(crate) fn new(windows: Vec<Duration>, expire_after: Option<u32>) -> Self {
        let now = Instant::now();
        Aggregator {
            expire_after,
            idle: Vec::new(),
            hidden: Vec::new(),
            bases: Bases::default(),
            levels: std::sync::Arc::new(windows.iter().map(|&w| Level::new(w, now)).collect()),
            prev: Point { at: now, seq: 0 },
            windows: windows.into(),
            collectors: Vec::new(),
            observers: Vec::new(),
            seq: 0,
            last: now,
            raw: std::sync::Arc::new([]),
            shown: std::sync::Arc::new([]),
            last_hists: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// One merge + publish. Serialised by the aggregator mutex.
    pub(crate) fn tick(core: &Core) -> Arc<Snapshot> {
        let mut agg = lock(&core.aggregator);
        let start = Instant::now();
        for c in &mut agg.collectors {
            // One failing collector must not stop the tick (or the others).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.collect()));
        }
        let view = lock(&core.catalogue).view();
        let snapshot = Arc::new(agg.merge(core, &view, start));
        core.published.store(snapshot.clone());
        for o in &mut agg.observers {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| o.observe(&snapshot)));
        }
        snapshot
    }

    /// Idle-series expiry: whether series `id` is hidden this tick. A series that saw no
    /// change for `expire_after` ticks is hidden and its current cumulative value becomes its
    /// base; when it changes again it reappears counting from that base (a counter restarts
    /// from zero, which Prometheus' `rate()` treats as a reset).
    fn expired(&mut self, id: u32, active: bool, base: impl FnOnce() -> Base) -> bool {
        let Some(n) = self.expire_after else { return false };
        let i = id as usize;
        if self.idle.len() <= i {
            self.idle.resize(i + 1, 0);
            self.hidden.resize(i + 1, false);
        }
        if active {
            self.idle[i] = 0;
            self.hidden[i] = false;
            return false;
        }
        self.idle[i] = self.idle[i].saturating_add(1);
        if self.idle[i] >= n {
            if !self.hidden[i] {
                self.hidden[i] = true;
                std::sync::Arc::make_mut(&mut self.bases).insert(id, base());
            }
            return true;
        }
        false
    }

    fn merge(&mut self, core: &Core, view: &std::sync::Arc<View>, start: Instant) -> Snapshot {
        let interval = start.duration_since(self.last);
        let secs = interval.as_secs_f64();
        self.last = start;
        self.seq += 1;
        self.place_boundaries(start);

        // Counters, shard-major: each shard's chunks are summed as contiguous runs into a fresh
        // array (the snapshot, the next tick and window levels share it; nothing copies it).
        let mut raw: std::sync::Arc<[u64]> = std::iter::repeat_n(0, view.counters).collect();
        let mut shards = 0;
        {
            let totals = std::sync::Arc::get_mut(&mut raw).expect("a fresh Arc is unique");
            for shard in core.shards.iter() {
                shard.add_counters_into(totals);
                shards += 1;
            }
        }
        self.last_hists.resize_with(view.histograms, || None);
        let mut gauges = vec![0.0; view.gauges];
        // Histograms by histogram number (the view is sorted by name).
        let mut histograms = vec![None; view.histograms];
        if view.gauges + view.histograms > 0 {
            for (_, e) in view.records.iter() {
                match e.store {
                    Store::Counter { .. } => {}
                    Store::Gauge(loc) => gauges[e.slot as usize] = core.gauges.read(loc),
                    Store::Histogram { index, loc, precision } => histograms[index as usize] = Some((loc, precision)),
                }
            }
        }
        let mut merged: Vec<HistogramSnapshot> = Vec::with_capacity(view.histograms);
        for (index, h) in histograms.iter().enumerate() {
            // Every histogram number below `view.histograms` has a series in the view; keep the
            // numbering aligned even if one did not.
            let Some(&(loc, precision)) = h.as_ref() else {
                debug_assert!(false, "histogram {index} has no series in the view");
                merged.push(HistogramSnapshot::empty(buckets::DEFAULT_PRECISION));
                continue;
            };
            // Read before any bucket: a merge covers every record this count includes.
            let version = histogram_version(core, loc);
            let last = &mut self.last_hists[index];
            let mut h = match last {
                Some(l) if l.version == version => HistogramSnapshot::clone(&l.merged),
                _ => {
                    let mut h = merge_histogram(core, loc, precision, &mut self.scratch);
                    let (pc, ps) = last.as_ref().map_or((0, 0), |l| (l.merged.count, l.merged.sum));
                    let (dc, ds) = (h.count.saturating_sub(pc), h.sum.saturating_sub(ps));
                    *last = Some(LastHist { version, merged: std::sync::Arc::new(h.clone()) });
                    h.delta_count = dc;
                    h.delta_sum = ds;
                    h
                }
            };
            h.rate = rate(h.delta_count, secs);
            merged.push(h);
        }
        // Idle expiry: hide, and show returning series from their base. Counters are active
        // when their raw total moved; the published totals subtract the bases (a copy of the
        // raw array, made only when some base applies).
        let mut hidden = Vec::new();
        let mut shown = None;
        if self.expire_after.is_some() {
            hidden = vec![false; view.len()];
            for (id, e) in view.records.iter() {
                let i = e.slot as usize;
                let hide = match e.store {
                    Store::Counter { .. } => {
                        let total = raw[i];
                        let active = total != self.raw.get(i).copied().unwrap_or(0);
                        self.expired(id, active, || Base::Counter(total))
                    }
                    Store::Histogram { .. } => {
                        let h = &merged[i];
                        self.expired(id, h.delta_count != 0, || Base::Histogram(h.clone()))
                    }
                    Store::Gauge(_) => false,
                };
                hidden[id as usize] = hide;
                match (self.bases.get(&id), e.store) {
                    (Some(Base::Counter(b)), Store::Counter { .. }) => {
                        let totals = shown.get_or_insert_with(|| raw.to_vec());
                        totals[i] = totals[i].saturating_sub(*b);
                    }
                    (Some(Base::Histogram(b)), Store::Histogram { .. }) => merged[i] = merged[i].since(b),
                    _ => {}
                }
            }
            if !hidden.contains(&true) {
                hidden = Vec::new();
            }
        }
        let shown: std::sync::Arc<[u64]> = shown.map_or_else(|| raw.clone(), Into::into);
        let prev_counters = std::mem::replace(&mut self.shown, shown.clone());
        self.raw = raw;
        let mut exemplars = Vec::new();
        if core.exemplars.in_use() {
            for (id, e) in view.records.iter() {
                let ex = match e.store {
                    Store::Counter { index, .. } => core.exemplars.counter(index as usize),
                    Store::Histogram { index, .. } => core.exemplars.histogram(index as usize),
                    Store::Gauge(_) => None,
                };
                if let Some(ex) = ex {
                    exemplars.push((id, ex));
                }
            }
        }
        self.prev = Point { at: start, seq: self.seq };
        Snapshot {
            levels: self.levels.clone(),
            at: start,
            bases: self.bases.clone(),
            windows: self.windows.clone(),
            view: view.clone(),
            counters: shown,
            prev_counters,
            gauges: gauges.into(),
            histograms: merged.into(),
            exemplars: exemplars.into(),
            hidden: hidden.into(),
            seq: self.seq,
            taken_at: SystemTime::now(),
            interval,
            tick_duration: start.elapsed(),
            shards,
        }
    }
}

impl Aggregator {
    /// Window checkpoints: every level whose segment since its latest boundary would grow past
    /// its width with this tick (at `now`) places a boundary at the previous tick, from the raw
    /// values that tick left (`raw`, `last_hists`), shared, not copied. Ticks that place none
    /// do no window work.
    fn place_boundaries(&mut self, now: Instant) {
        let prev = self.prev;
        if !self.levels.iter().any(|l| l.due(now, prev)) {
            return;
        }
        let totals = self.raw.clone();
        let hists: HistPoints = self.last_hists.iter().map(|l| l.as_ref().map(|l| l.merged.clone())).collect();
        // Copies the levels (a few `Arc`s each) only if a snapshot still holds them.
        for level in std::sync::Arc::make_mut(&mut self.levels).iter_mut() {
            if level.due(now, prev) {
                level.place(prev, &totals, &hists);
            }
        }
    }
}

fn rate(delta: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        delta as f64 / secs
    } else {
        0.0
    }
}

/// The sum over shards of a histogram slot's record counts (Acquire: pairs with the count's
/// Release store in `HistSlot::record`, so buckets read afterwards include those records).
fn histogram_version(core: &Core, loc: HistLoc) -> u64 {
    core.shards
        .iter()
        .filter_map(|shard| shard.read_hist(loc))
        .fold(0u64, |n, slot| n.wrapping_add(slot.count.load(Ordering::Acquire)))
}

/// Sums one histogram over every shard. `scratch` is a reusable dense bucket buffer, left
/// zeroed. Group `g` covers the bucket indices `group_start(g) .. group_start(g) + group_len`,
/// so neighbouring groups share two indices (`buckets`): both add into the same scratch cells.
pub(crate) fn merge_histogram(core: &Core, loc: HistLoc, p: u8, scratch: &mut Vec<u64>) -> HistogramSnapshot {
    let n = buckets::bucket_count(p);
    if scratch.len() < n {
        scratch.resize(n, 0);
    }
    let group_len = buckets::group_len(p);
    let mut touched = 0u64;
    let (mut sum, mut min_inv, mut max) = (0u64, 0u64, 0u64);
    for shard in core.shards.iter() {
        let Some(slot) = shard.read_hist(loc) else { continue };
        let mut any = false;
        for g in 0..buckets::group_count(p) {
            // SAFETY: callers pass the `loc` and `p` of one `Store::Histogram`, the precision
            // every record into this series' slots used.
            let Some(group) = (unsafe { slot.group(g, p) }) else { continue };
            any = true;
            touched |= 1 << g;
            let start = buckets::group_start(g, p);
            let dst = &mut scratch[start..start + group_len];
            for (d, cell) in dst.iter_mut().zip(group) {
                // Acquire: pairs with the Release bucket store in `HistSlot::record`, so the
                // sum/min/max loads below cover every value counted here.
                *d = d.wrapping_add(cell.load(Ordering::Acquire));
            }
        }
        if any {
            // Relaxed: ordered after the Acquire bucket loads above.
            sum = sum.saturating_add(slot.sum.load(Ordering::Relaxed));
            min_inv = min_inv.max(slot.min_inv.load(Ordering::Relaxed));
            max = max.max(slot.max.load(Ordering::Relaxed));
        }
    }
    let mut out = Vec::new();
    let mut count = 0u64;
    // Groups in ascending order cover ascending index ranges; an index shared with the previous
    // group was emitted (and zeroed) with it, so each index is emitted once, in order.
    while touched != 0 {
        let g = touched.trailing_zeros() as usize;
        touched &= touched - 1;
        let start = buckets::group_start(g, p);
        for (i, c) in scratch[start..start + group_len].iter_mut().enumerate() {
            if *c != 0 {
                out.push(((start + i) as u32, *c));
                count = count.wrapping_add(*c);
                *c = 0;
            }
        }
    }
    let mut h = HistogramSnapshot::empty(p);
    if count > 0 {
        h.count = count;
        // `sum` can already include values whose bucket increments this tick did not see (the
        // owner stores sum before the bucket), so sum/count could exceed max (loom model
        // `histogram_merge`). Cap it at count·max: the rest is published with those buckets on a
        // later tick (sums are cumulative), and the cap never makes the sum go backwards.
        h.sum = sum.min(count.saturating_mul(max));
        h.min = !min_inv;
        h.max = max;
        h.buckets = out.into();
    }
    h
}

/// Name of the aggregator thread (short enough to survive Linux's 15-byte `comm` limit).
pub const THREAD_NAME: &str = "sm-aggregator";

/// The background ticker: a std thread (never under loom) that ticks every `interval` until
/// stopped.
pub(crate) struct Ticker {
    stop: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(core: Arc<Core>, interval: Duration) -> Ticker {
        let stop = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let (m, cv) = &*flag;
                let mut next = Instant::now() + interval;
                loop {
                    let mut stopped = m.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    while !*stopped {
                        let now = Instant::now();
                        if now >= next {
                            break;
                        }
                        stopped = cv.wait_timeout(stopped, next - now).unwrap_or_else(|e| e.into_inner()).0;
                    }
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    // A panic in one tick must not end the aggregator for good.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| Aggregator::tick(&core)));
                    next += interval;
                    let now = Instant::now();
                    if next < now {
                        // Fell behind (a long tick or a suspended process): skip, don't burst.
                        next = now + interval;
                    }
                }
            })
            .expect("failed to spawn the shardmetrics aggregator thread");
        Ticker { stop, handle: Some(handle) }
    }

    /// Signals the thread and joins it (unless called from the thread itself).
    pub(crate) fn stop(mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        cv.notify_all();
        if let Some(h) = self.handle.take() {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }
}
