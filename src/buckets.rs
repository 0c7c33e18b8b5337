//! The histograms' bucket layout: base-2 exponential buckets (Prometheus native histograms,
//! OpenTelemetry exponential histograms), numbered densely (pure functions; property-tested and
//! fuzzed). The math is [`crate::exp_buckets`]'s; this module fixes the numbering the shards,
//! the merge and the snapshots share.
//!
//! A histogram's precision `p` is its schema (`0 ≤ p ≤ 8`, `2^p` buckets per power of two).
//! Bucket **index** `i` is the dense slot [`exp_buckets::slot`]: `0` is the zero bucket (the
//! value `0` only: `u64` has no negatives), and `i ≥ 1` is the exponential key `k = i - 1`,
//! holding the values `v` with `2^((k-1)·2^-p) < v ≤ 2^(k·2^-p)` (bit for bit Prometheus'
//! bounds). There are `64·2^p + 2` indices; `u64::MAX` lands in the last one. Some low
//! buckets hold no integer (at `p = 5`, a few below 45); they never count anything.
//!
//! The shards store the buckets grouped **one group per power of two** (the group is known
//! from one `lzcnt`, [`exp_buckets::octave_position`]): group `g` holds the indices
//! `g·2^p ..= g·2^p + 2^p + 1` ([`group_len`] cells), so neighbouring groups share two
//! indices, which the merge sums.
//!
//! A bucket's representative value is the point `2ab/(a+b)` of its integers `a ..= b`, rounded
//! ([`exp_buckets::representative`]): within `(γ-1)/(γ+1)` (`γ = 2^(2^-p)`) plus half a unit
//! of every value in the bucket; at the default `p = 5`, within 1.79 % (1.1 % above 1,357).

#![forbid(unsafe_code)]

use crate::exp_buckets;

/// Lowest accepted precision (schema): one bucket per power of two.
pub const MIN_PRECISION: u8 = 0;
/// Highest accepted precision (schema): 256 buckets per power of two (0.27 % wide), 2 KiB per
/// populated power of two per thread.
pub const MAX_PRECISION: u8 = exp_buckets::MAX_SCHEMA as u8;
/// Default precision (schema 5): ≤ 1.79 % relative quantile error, 272 B per populated power
/// of two per thread.
pub const DEFAULT_PRECISION: u8 = exp_buckets::DEFAULT_SCHEMA;

/// Number of bucket groups (one per power of two of a `u64`).
#[inline]
pub const fn group_count(_p: u8) -> usize {
    64
}

/// Cells per group at precision `p`: positions `0 ..= 2^p + 1` of [`exp_buckets::octave_position`].
#[inline]
pub const fn group_len(p: u8) -> usize {
    (1 << p) + 2
}

/// First index of group `g` (its position 0).
#[inline]
pub const fn group_start(g: usize, p: u8) -> usize {
    g << p
}

/// Total number of bucket indices for precision `p`.
#[inline]
pub const fn bucket_count(p: u8) -> usize {
    exp_buckets::slot_count(p)
}

/// Bucket index of `value` at precision `p` (`0 ≤ p ≤ 8`). Branch-free.
#[inline(always)]
pub fn index(value: u64, p: u8) -> usize {
    exp_buckets::slot(value, p)
}

/// The exponential key of index `idx ≥ 1` (index 0 is the zero bucket, which has none).
#[inline]
pub const fn key(idx: usize) -> i32 {
    idx as i32 - 1
}

/// Lowest value that maps to bucket `idx` (above [`highest`] for a bucket holding no integer).
#[inline]
pub fn lowest(idx: usize, p: u8) -> u64 {
    if idx == 0 {
        0
    } else {
        exp_buckets::lowest(key(idx), p as i8)
    }
}

/// Highest value that maps to bucket `idx` (the last bucket ends at `u64::MAX`).
#[inline]
pub fn highest(idx: usize, p: u8) -> u64 {
    if idx == 0 {
        0
    } else {
        exp_buckets::highest(key(idx), p as i8)
    }
}

/// The value reported for bucket `idx`: [`exp_buckets::representative`] rounded (exact for
/// buckets holding one integer, and for the zero bucket).
#[inline]
pub fn representative(idx: usize, p: u8) -> u64 {
    if idx == 0 {
        0
    } else {
        // `as` saturates; the rounded point of `a ..= b` stays in `a ..= b`.
        exp_buckets::representative(key(idx), p as i8).round() as u64
    }
}

/// Worst relative error of the (unrounded) representative at precision `p`: `(γ-1)/(γ+1)`,
/// `γ = 2^(2^-p)`. Rounding to a `u64` adds at most half a unit.
pub fn relative_error(p: u8) -> f64 {
    let gamma = (1.0f64 / f64::from(1u32 << p)).exp2();
    (gamma - 1.0) / (gamma + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        for p in MIN_PRECISION..=MAX_PRECISION {
            assert_eq!(index(0, p), 0);
            assert_eq!((lowest(0, p), highest(0, p)), (0, 0));
            assert_eq!(index(u64::MAX, p), bucket_count(p) - 1, "p={p}");
            assert_eq!(highest(bucket_count(p) - 1, p), u64::MAX);
            for k in 0..64 {
                let v = 1u64 << k;
                for v in [v - 1, v, v + 1] {
                    let i = index(v, p);
                    assert!(lowest(i, p) <= v && v <= highest(i, p), "p={p} v={v} i={i}");
                    let (g, pos) = exp_buckets::octave_position(v, p);
                    assert!(g < group_count(p) && pos < group_len(p));
                    assert_eq!(group_start(g, p) + pos, i);
                }
            }
        }
    }

    #[test]
    fn buckets_tile_the_range() {
        for p in MIN_PRECISION..=MAX_PRECISION {
            let mut expect = 0u64;
            for i in 0..bucket_count(p) {
                let (lo, hi) = (lowest(i, p), highest(i, p));
                if lo > hi {
                    // No integer in this bucket.
                    assert_eq!(lo, expect, "p={p} i={i}");
                    continue;
                }
                assert_eq!(lo, expect, "p={p} i={i}");
                if i + 1 < bucket_count(p) {
                    expect = hi + 1;
                } else {
                    assert_eq!(hi, u64::MAX);
                }
            }
        }
    }

    #[test]
    fn default_is_within_two_percent() {
        for i in 1..bucket_count(DEFAULT_PRECISION) {
            let (a, b) = (lowest(i, DEFAULT_PRECISION), highest(i, DEFAULT_PRECISION));
            if a <= b {
                let r = representative(i, DEFAULT_PRECISION) as f64;
                for v in [a, b] {
                    assert!((r - v as f64).abs() / v as f64 <= 0.0179, "i={i} v={v}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn value_in_its_bucket(v in any::<u64>(), p in MIN_PRECISION..=MAX_PRECISION) {
            let i = index(v, p);
            prop_assert!(i < bucket_count(p));
            prop_assert!(lowest(i, p) <= v && v <= highest(i, p));
        }

        #[test]
        fn monotonic(a in any::<u64>(), b in any::<u64>(), p in MIN_PRECISION..=MAX_PRECISION) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(index(lo, p) <= index(hi, p));
        }

        #[test]
        fn relative_error_bound(v in 1u64.., p in MIN_PRECISION..=MAX_PRECISION) {
            let r = representative(index(v, p), p);
            let err = (r as f64 - v as f64).abs() / v as f64;
            let bound = relative_error(p) + 0.5 / v as f64;
            prop_assert!(err <= bound + 1e-12, "v={} r={} err={}", v, r, err);
        }
    }
}
