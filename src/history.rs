//! The history windows are computed from: per configured window a *level* of cumulative
//! checkpoints at a resolution of a quarter of that window, kept by the aggregator and shared
//! (immutable, behind `Arc`s) with every snapshot. A leaf of the read layer: the snapshot holds
//! these, [`crate::window`] reads them.
//!
//! # Layout and memory
//! A level for a window of length `W` places a *boundary* at a tick roughly every `W / 4`
//! ([`SLOTS`]) and keeps the last [`KEEP`] segments between boundaries (two windows' worth, so
//! the window *before* the latest one — trends — has the same resolution, plus one). Per level it
//! stores:
//! * the raw cumulative counter totals at its latest boundary (8 B per counter; levels whose
//!   latest boundaries fall on the same tick share one copy),
//! * per segment the increase of every counter during it, packed to the narrowest of 1, 2, 4 or
//!   8 bytes that fits all but a few (those are kept aside, exact) — typically 1–2 B per counter
//!   per segment,
//! * per boundary the raw cumulative histograms (one pointer per histogram; the bucket list is
//!   the one the merge produced, shared, not copied).
//!
//! So a counter costs `levels × (8 + KEEP × 1..8)` bytes of history whatever the number of
//! ticks (51 B with the default three windows when increments per segment fit a byte), and a
//! tick that places no boundary does no window work at all.
//!
//! # Resolution
//! A window of length `L` is answered from the level of the smallest configured window `W ≥ L`
//! (or the longest, whose length then bounds `L`) as an exact difference between two points: the
//! snapshot's own tick and the boundary whose time is closest to `L` before it. The answer is
//! exact for the span it reports ([`crate::window::Window::covered`], ticks included whole), and
//! that span differs from `L` by at most about `W / 8` plus one tick once the history is long
//! enough.

#![forbid(unsafe_code)]

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::snapshot::HistogramSnapshot;

/// Default windows.
pub const DEFAULT_WINDOWS: &[Duration] = &[Duration::from_secs(10), Duration::from_secs(60), Duration::from_secs(300)];

/// Segments per window: a level's boundaries are about `window / SLOTS` apart.
pub const SLOTS: u32 = 4;

/// Segments a level keeps: two windows' worth (for the window before the latest) plus one.
pub const KEEP: usize = 2 * SLOTS as usize + 1;

/// The cumulative value an expired series restarts from (see the aggregator's idle expiry): a
/// snapshot shows `raw - base`; windows work on raw values.
#[derive(Clone, Debug)]
pub(crate) enum Base {
    Counter(u64),
    Histogram(HistogramSnapshot),
}

/// Bases by series id, shared with snapshots (copied only when one is added).
pub(crate) type Bases = Arc<HashMap<u32, Base>>;

/// A tick at which a level placed a boundary.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Point {
    pub(crate) at: Instant,
    pub(crate) seq: u64,
}

/// Raw cumulative histograms at one tick, by dense histogram number (`None`: never recorded).
pub(crate) type HistPoints = Arc<[Option<Arc<HistogramSnapshot>>]>;

/// Counter increases during one segment, by dense counter number, packed (see [`Column::pack`]).
/// Counters registered after the segment read 0.
#[derive(Debug)]
pub(crate) struct Column {
    data: Packed,
    /// Values that do not fit `data`'s width (stored there as the width's maximum), by index.
    wide: Box<[(u32, u64)]>,
}

#[derive(Debug)]
enum Packed {
    U8(Box<[u8]>),
    U16(Box<[u16]>),
    U32(Box<[u32]>),
    U64(Box<[u64]>),
}

impl Column {
    /// Packs `values` into the width that needs the fewest bytes, counting 16 B for every value
    /// that must be kept aside.
    pub(crate) fn pack(values: &[u64]) -> Column {
        let (mut over8, mut over16, mut over32) = (0usize, 0usize, 0usize);
        for &v in values {
            over8 += usize::from(v >= u8::MAX as u64);
            over16 += usize::from(v >= u16::MAX as u64);
            over32 += usize::from(v >= u32::MAX as u64);
        }
        let n = values.len();
        let cost = [n + 16 * over8, 2 * n + 16 * over16, 4 * n + 16 * over32, 8 * n];
        let best = (0..4).min_by_key(|&i| cost[i]).unwrap_or(3);
        let mut wide = Vec::new();
        fn narrow<T>(values: &[u64], max: u64, cast: impl Fn(u64) -> T, wide: &mut Vec<(u32, u64)>) -> Box<[T]> {
            let keep_aside = |(i, &v): (usize, &u64)| {
                if v < max {
                    cast(v)
                } else {
                    wide.push((i as u32, v));
                    cast(max)
                }
            };
            values.iter().enumerate().map(keep_aside).collect()
        }
        let data = match best {
            0 => Packed::U8(narrow(values, u8::MAX as u64, |v| v as u8, &mut wide)),
            1 => Packed::U16(narrow(values, u16::MAX as u64, |v| v as u16, &mut wide)),
            2 => Packed::U32(narrow(values, u32::MAX as u64, |v| v as u32, &mut wide)),
            _ => Packed::U64(values.into()),
        };
        Column { data, wide: wide.into() }
    }

    /// The increase of counter `i` during the segment.
    #[inline]
    pub(crate) fn get(&self, i: usize) -> u64 {
        let (v, max) = match &self.data {
            Packed::U8(d) => (d.get(i).map(|&x| x as u64), u8::MAX as u64),
            Packed::U16(d) => (d.get(i).map(|&x| x as u64), u16::MAX as u64),
            Packed::U32(d) => (d.get(i).map(|&x| x as u64), u32::MAX as u64),
            Packed::U64(d) => return d.get(i).copied().unwrap_or(0),
        };
        match v {
            None => 0,
            Some(v) if v == max => {
                self.wide.binary_search_by_key(&(i as u32), |&(j, _)| j).map_or(v, |k| self.wide[k].1)
            }
            Some(v) => v,
        }
    }

    /// Heap bytes held.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        let data = match &self.data {
            Packed::U8(d) => d.len(),
            Packed::U16(d) => 2 * d.len(),
            Packed::U32(d) => 4 * d.len(),
            Packed::U64(d) => 8 * d.len(),
        };
        data + 16 * self.wide.len()
    }
}

/// The checkpoints serving one configured window. Immutable once published in a snapshot (the
/// aggregator copies the `VecDeque`s of `Arc`s when it changes a level a snapshot still holds).
#[derive(Clone, Debug)]
pub(crate) struct Level {
    /// The configured window this level serves.
    pub(crate) window: Duration,
    /// Target spacing of boundaries (`window / SLOTS`).
    width: Duration,
    /// Boundaries, oldest first; `points.len() == segments.len() + 1`.
    pub(crate) points: VecDeque<Point>,
    /// `segments[i]`: counter increases from `points[i]` to `points[i + 1]`.
    pub(crate) segments: VecDeque<Arc<Column>>,
    /// Raw cumulative counter totals at the latest point.
    pub(crate) latest: Arc<[u64]>,
    /// Raw cumulative histograms at each point.
    pub(crate) hists: VecDeque<HistPoints>,
}

impl Level {
    /// A level whose first point is the registry's start (every value zero).
    pub(crate) fn new(window: Duration, start: Instant) -> Level {
        Level {
            window,
            width: window / SLOTS,
            points: VecDeque::from([Point { at: start, seq: 0 }]),
            segments: VecDeque::new(),
            latest: Arc::new([]),
            hists: VecDeque::from([HistPoints::from(Vec::new())]),
        }
    }

    /// Whether a tick at `now` should first place a boundary at the previous tick `prev`: the
    /// segment since the latest boundary would otherwise grow past the width.
    pub(crate) fn due(&self, now: Instant, prev: Point) -> bool {
        let latest = self.points.back().expect("a level always has a point");
        prev.seq > latest.seq && now.saturating_duration_since(latest.at) > self.width
    }

    /// Places a boundary at `at` with these raw cumulative values (shared by the levels that
    /// place one on the same tick), packing every counter's increase since the latest one.
    pub(crate) fn place(&mut self, at: Point, totals: &Arc<[u64]>, hists: &HistPoints) {
        let values: Vec<u64> = totals
            .iter()
            .enumerate()
            .map(|(i, &t)| t.saturating_sub(self.latest.get(i).copied().unwrap_or(0)))
            .collect();
        self.segments.push_back(Arc::new(Column::pack(&values)));
        self.points.push_back(at);
        self.hists.push_back(hists.clone());
        self.latest = totals.clone();
        while self.segments.len() > KEEP {
            self.segments.pop_front();
            self.points.pop_front();
            self.hists.pop_front();
        }
    }
}

/// Bucket-wise `cur - prev` of two sparse, ascending bucket lists (`cur ≥ prev` bucket-wise).
pub(crate) fn subtract(cur: &[(u32, u64)], prev: &[(u32, u64)]) -> Box<[(u32, u64)]> {
    let mut out = Vec::new();
    let mut p = prev.iter().peekable();
    for &(i, n) in cur {
        while p.peek().is_some_and(|&&(j, _)| j < i) {
            p.next();
        }
        let before = match p.peek() {
            Some(&&(j, m)) if j == i => m,
            _ => 0,
        };
        if n > before {
            out.push((i, n - before));
        }
    }
    out.into()
}

/// Bucket-wise `a + b` of two sparse, ascending bucket lists.
pub(crate) fn add(a: &[(u32, u64)], b: &[(u32, u64)]) -> Box<[(u32, u64)]> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.iter().peekable(), b.iter().peekable());
    loop {
        match (a.peek(), b.peek()) {
            (Some(&&(i, n)), Some(&&(j, m))) => {
                if i == j {
                    out.push((i, n.saturating_add(m)));
                    a.next();
                    b.next();
                } else if i < j {
                    out.push((i, n));
                    a.next();
                } else {
                    out.push((j, m));
                    b.next();
                }
            }
            (Some(&&x), None) => {
                out.push(x);
                a.next();
            }
            (None, Some(&&y)) => {
                out.push(y);
                b.next();
            }
            (None, None) => break,
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_math() {
        assert_eq!(&*subtract(&[(1, 5), (3, 2), (9, 4)], &[(1, 5), (9, 1)]), &[(3, 2), (9, 3)]);
        assert_eq!(&*add(&[(1, 1), (5, 1)], &[(0, 2), (5, 3), (7, 1)]), &[(0, 2), (1, 1), (5, 4), (7, 1)]);
    }

    #[test]
    fn columns_pack_to_the_cheapest_width_and_stay_exact() {
        let cases: Vec<Vec<u64>> = vec![
            vec![],
            vec![0, 1, 2, 254],
            vec![0, 255, 3],
            vec![7; 100].into_iter().chain([1 << 40]).collect(),
            (0..1000).map(|i| i * 70).collect(),
            (0..100).map(|i| (i as u64) << 33).collect(),
            vec![u8::MAX as u64, u16::MAX as u64, u32::MAX as u64, u64::MAX],
        ];
        for values in cases {
            let c = Column::pack(&values);
            for (i, &v) in values.iter().enumerate() {
                assert_eq!(c.get(i), v, "{i} of {values:?}");
            }
            assert_eq!(c.get(values.len()), 0, "past the end reads 0");
            assert!(c.bytes() <= 8 * values.len(), "never wider than plain u64s");
        }
        // Small increments with one outlier: a byte each, the outlier aside.
        let mut v = vec![3u64; 1000];
        v[500] = 1 << 50;
        assert_eq!(Column::pack(&v).bytes(), 1000 + 16);
    }

    #[test]
    fn a_level_keeps_a_bounded_number_of_segments_whatever_the_ticks() {
        let t0 = Instant::now();
        let mut level = Level::new(Duration::from_secs(10), t0);
        let mut totals = vec![0u64; 1000];
        for tick in 1..=10_000u64 {
            let at = Point { at: t0 + Duration::from_millis(500 * tick), seq: tick };
            for t in totals.iter_mut() {
                *t += tick % 3;
            }
            if level.due(at.at + Duration::from_millis(500), at) {
                level.place(at, &totals.as_slice().into(), &HistPoints::from(Vec::new()));
            }
            assert!(level.segments.len() <= KEEP);
            assert_eq!(level.points.len(), level.segments.len() + 1);
            assert_eq!(level.hists.len(), level.points.len());
        }
        assert_eq!(level.segments.len(), KEEP);
        // About a quarter window apart, never more.
        for w in level.points.iter().collect::<Vec<_>>().windows(2) {
            let gap = w[1].at - w[0].at;
            assert!(gap <= Duration::from_millis(2500) && gap > Duration::from_millis(2000), "{gap:?}");
        }
        // Per-segment increases of ≤ 2 per tick over 5 ticks fit a byte per counter.
        assert!(level.segments.iter().all(|c| c.bytes() == 1000));
    }
}
