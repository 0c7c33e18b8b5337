//! The native-histogram buckets (issue #16) the protobuf encoder writes: histograms record
//! into base-2 exponential buckets at their precision, which is the native schema (`buckets`,
//! `exp_buckets`), so the recorded buckets are the native buckets, exactly, with no conversion:
//! [`native_buckets`] hands them to the encoder ([`super::write_native`]), which turns them into
//! spans, deltas and the zero bucket.
//!
//! **Units.** The bucket bounds are powers of two in the unit the values are recorded in. For a
//! histogram whose exported unit is its recorded unit (no unit, seconds, bytes, ratios) the
//! recorded keys are the exported keys. A histogram recorded in ns, µs or ms and exported in
//! seconds would need its values keyed by where they fall *in seconds*
//! (`exp_buckets::ScaledMapping`), not relabelled (×10^-9 is not a power of two): that is not
//! done yet, so such histograms are exposed classic only ([`native_buckets`] answers `None`).

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

/// The native buckets of series `h` of family `info`: the recorded exponential buckets, when
/// the family's recorded unit is its exported unit (see the module doc; `None` otherwise).
pub(crate) fn native_buckets<'a>(info: &'a FamilyInfo, h: &'a HistogramSnapshot) -> Option<impl NativeBuckets + 'a> {
    // `value_in_base` is the identity exactly for the units exported as recorded.
    if info.unit().to_base() != 1.0 {
        return None;
    }
    Some(Recorded(h))
}

/// A histogram's recorded buckets, read as native buckets (identity mapping).
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
