//! The seam for native-histogram buckets (issue #16, item 1): what the protobuf encoder needs
//! from a histogram to write the native part of its `Histogram` message, and where it asks.
//!
//! Today histograms record into log-linear buckets (32 linear sub-buckets per power of two),
//! which do not line up with the base-2 exponential boundaries `2^(k·2^-schema)` of native
//! histograms, so [`native_buckets`] answers `None` and histograms are exposed classic only.
//! Converting log-linear counts into native buckets would not be exact; that is deliberately
//! not done here. The bucket-layout work fills this in: implement [`NativeBuckets`] over the
//! exponential buckets and return it from [`native_buckets`]; the encoder
//! ([`super::write_native`]) turns it into spans, deltas and the zero bucket.

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

/// The native buckets of series `h` of family `info`, if it has them: always `None` until
/// histograms record into exponential buckets (see the module doc).
pub(crate) fn native_buckets<'a>(info: &'a FamilyInfo, h: &'a HistogramSnapshot) -> Option<impl NativeBuckets + 'a> {
    let _ = (info, h);
    None::<Unavailable>
}

/// The type [`native_buckets`] names while it has nothing to return; it has no values.
pub(crate) enum Unavailable {}

impl NativeBuckets for Unavailable {
    fn schema(&self) -> i32 {
        match *self {}
    }
    fn zero_threshold(&self) -> f64 {
        match *self {}
    }
    fn zero_count(&self) -> u64 {
        match *self {}
    }
    fn positive(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        match *self {}
        #[allow(unreachable_code)] // names the iterator type the uninhabited match never returns
        std::iter::empty()
    }
}
