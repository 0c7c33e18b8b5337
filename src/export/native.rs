//! The native-histogram buckets (issue #16) the binary formats write (the protobuf exposition,
//! remote write's `Histogram` message): histograms record
//! into base-2 exponential buckets at their precision, which is the native schema (`buckets`,
//! `exp_buckets`), so the recorded buckets are the native buckets, exactly, with no conversion:
//! [`native_buckets`] hands them to the encoders, which turn them into spans, deltas and the zero
//! bucket.
//!
//! **Units.** The bucket bounds are powers of two in the *exported* unit. A histogram recorded
//! in ns, µs or ms and exported in seconds keys each value, when it is recorded, by the bucket
//! its value in seconds falls in (`exp_buckets::ScaledMapping`, chosen by `buckets::Mapping`
//! from the unit): relabelling the recorded keys would be wrong, since ×10^-9 is not a power of
//! two. So every histogram's recorded buckets are its native buckets in the exported unit,
//! exactly, and the zero bucket still holds exactly the value 0 (threshold 0).

use crate::snapshot::{FamilyInfo, HistogramSnapshot};

/// A histogram's native buckets, as the encoder reads them. Counts are cumulative since the
/// start (like the classic buckets); `u64` values are never negative, so there are no negative
/// buckets.
pub(crate) trait NativeBuckets {
    /// The schema the buckets are exposed at (-4..=8): bucket `k` holds values in
    /// `(2^((k-1)·2^-schema), 2^(k·2^-schema)]`.
    fn schema(&self) -> i32;
    /// Breadth of the zero bucket, in the exported unit (seconds for time units).
    fn zero_threshold(&self) -> f64;
    /// Values in the zero bucket (at most `zero_threshold`).
    fn zero_count(&self) -> u64;
    /// The non-empty positive buckets as `(index, count)`, in ascending index order.
    fn positive(&self) -> impl Iterator<Item = (i32, u64)> + '_;
}

/// The native buckets of series `h` of family `info`: the recorded exponential buckets, whose
/// keys are in the exported unit whatever the recorded one (see the module doc). `None` for a
/// series whose mapping is not its family's unit's: one registered unitless through the
/// `metrics` facade before a late `describe_histogram!` gave its family a time unit (its values
/// were keyed as recorded, so relabelling them in seconds would misplace them); it is exported
/// with its classic buckets only.
pub(crate) fn native_buckets<'a>(info: &'a FamilyInfo, h: &'a HistogramSnapshot) -> Option<impl NativeBuckets + 'a> {
    // The unit's exact scale to the exported unit: 1 / to_base is 1, 10^3, 10^6 or 10^9.
    let den = (1.0 / info.unit().to_base()).round() as u64;
    (h.mapping.scale() == (1, den)).then_some(Recorded(h))
}

/// A histogram's recorded buckets, read as native buckets (keys in the exported unit).
pub(crate) struct Recorded<'a>(&'a HistogramSnapshot);

impl NativeBuckets for Recorded<'_> {
    fn schema(&self) -> i32 {
        i32::from(self.0.native().0)
    }
    /// `u64` values have no negatives and nothing between 0 and 1: the zero bucket holds exactly
    /// the value 0, so its threshold is 0.
    fn zero_threshold(&self) -> f64 {
        0.0
    }
    fn zero_count(&self) -> u64 {
        self.0.native().1
    }
    fn positive(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.0.native().2
    }
}

/// Most empty buckets between two non-empty ones that are written as zero deltas instead of
/// starting a new span (a span costs two fields, an empty bucket one byte): client_golang's
/// choice.
#[cfg(any(feature = "protobuf", feature = "remote-write"))]
const MAX_GAP_IN_SPAN: i32 = 2;

/// The positive spans `(offset, length)` of `native`'s buckets, in order: the first offset is
/// the first bucket's index, each later one the gap since the previous span; gaps of up to
/// [`MAX_GAP_IN_SPAN`] empty buckets stay inside a span (as zero counts in [`deltas`]). Nothing
/// for a histogram without positive buckets.
#[cfg(any(feature = "protobuf", feature = "remote-write"))]
pub(crate) fn for_each_span(native: &impl NativeBuckets, mut f: impl FnMut(i32, u32)) {
    let mut next: Option<i32> = None; // the index after the last bucket seen
    let mut span: Option<(i32, u32)> = None; // (offset, length) of the open span
    for (index, _) in native.positive() {
        match (next, &mut span) {
            (Some(n), Some((_, length))) if index - n <= MAX_GAP_IN_SPAN => *length += (index - n) as u32 + 1,
            _ => {
                if let Some((offset, length)) = span.take() {
                    f(offset, length);
                }
                span = Some((next.map_or(index, |n| index - n), 1));
            }
        }
        next = Some(index + 1);
    }
    if let Some((offset, length)) = span {
        f(offset, length);
    }
}

/// The bucket counts along the spans of [`for_each_span`], delta-encoded (each the difference
/// from the previous bucket's count, empty buckets inside a span included as 0).
#[cfg(any(feature = "protobuf", feature = "remote-write"))]
pub(crate) fn deltas(native: &impl NativeBuckets) -> impl Iterator<Item = i64> + '_ {
    let mut previous = (None::<i32>, 0i64); // (index after the last bucket, its count)
    native.positive().flat_map(move |(index, count)| {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        // Empty buckets inside a span: each a delta back to 0, then up to this count.
        let gap = previous.0.map_or(0, |n| index - n);
        let zeros = if gap <= MAX_GAP_IN_SPAN { gap } else { 0 };
        let last = previous.1;
        previous = (Some(index + 1), count);
        let empties = (0..zeros).map(move |k| if k == 0 { -last } else { 0 });
        let back = if zeros > 0 { 0 } else { last };
        empties.chain(std::iter::once(count - back))
    })
}
