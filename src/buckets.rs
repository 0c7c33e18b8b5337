//! Log-linear bucket index math (pure functions; property-tested and fuzzed).
//!
//! A histogram of precision `p` splits the `u64` range into groups of `2^p` buckets:
//!
//! * group 0 holds the values `0 .. 2^p`, one value per bucket (exact);
//! * group `g ≥ 1` holds `2^(p+g-1) .. 2^(p+g)`, in `2^p` buckets of width `2^(g-1)`.
//!
//! The index is computed without branches from the position of the highest set bit (one
//! `lzcnt`), as HdrHistogram does: with `k = msb(v | 2^p)` and `shift = k - p`,
//! `index = (shift << p) + (v >> shift)`. There are `(65 - p) · 2^p` buckets in all; `u64::MAX`
//! lands in the last one. A bucket's representative value is its midpoint, so any value is
//! reported within a relative error of `2^-(p+1)` (1.56 % at the default `p = 5`).

#![forbid(unsafe_code)]

/// Lowest accepted precision (sub-bucket bits).
pub const MIN_PRECISION: u8 = 1;
/// Highest accepted precision: 0.05 % error, 2 KiB per populated power of two per thread.
pub const MAX_PRECISION: u8 = 10;
/// Default precision: ≤ 1.56 % relative quantile error, 256 B per populated power of two.
pub const DEFAULT_PRECISION: u8 = 5;

/// Number of bucket groups for precision `p` (each group has `2^p` buckets).
#[inline]
pub const fn group_count(p: u8) -> usize {
    65 - p as usize
}

/// Total number of buckets for precision `p`.
#[inline]
pub const fn bucket_count(p: u8) -> usize {
    group_count(p) << p
}

/// Bucket index of `value` at precision `p` (`1 ≤ p ≤ 10`). Branch-free.
#[inline(always)]
pub const fn index(value: u64, p: u8) -> usize {
    let p = p as u32;
    let k = 63 - (value | (1u64 << p)).leading_zeros();
    let shift = k - p;
    ((shift as usize) << p) + (value >> shift) as usize
}

/// Lowest value that maps to bucket `idx`.
#[inline]
pub const fn lowest(idx: usize, p: u8) -> u64 {
    let g = idx >> p;
    let sub = (idx & ((1usize << p) - 1)) as u64;
    if g == 0 {
        sub
    } else {
        ((1u64 << p) + sub) << (g - 1)
    }
}

/// Width of bucket `idx` (number of distinct values it holds).
#[inline]
pub const fn width(idx: usize, p: u8) -> u64 {
    let g = idx >> p;
    if g == 0 {
        1
    } else {
        1u64 << (g - 1)
    }
}

/// Highest value that maps to bucket `idx` (never overflows: the last bucket ends at `u64::MAX`).
#[inline]
pub const fn highest(idx: usize, p: u8) -> u64 {
    lowest(idx, p) + (width(idx, p) - 1)
}

/// The value reported for bucket `idx`: its midpoint (exact for width-1 buckets).
#[inline]
pub const fn representative(idx: usize, p: u8) -> u64 {
    lowest(idx, p) + (width(idx, p) - 1) / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn boundaries() {
        for p in MIN_PRECISION..=MAX_PRECISION {
            assert_eq!(index(0, p), 0);
            assert_eq!(index(u64::MAX, p), bucket_count(p) - 1, "p={p}");
            assert_eq!(highest(bucket_count(p) - 1, p), u64::MAX);
            for k in 0..64 {
                let v = 1u64 << k;
                for v in [v - 1, v, v + 1] {
                    let i = index(v, p);
                    assert!(lowest(i, p) <= v && v <= highest(i, p), "p={p} v={v} i={i}");
                }
            }
        }
    }

    #[test]
    fn buckets_tile_the_range() {
        for p in MIN_PRECISION..=MAX_PRECISION {
            let mut expect = 0u64;
            for i in 0..bucket_count(p) {
                assert_eq!(lowest(i, p), expect, "p={p} i={i}");
                let h = highest(i, p);
                if i + 1 < bucket_count(p) {
                    expect = h + 1;
                } else {
                    assert_eq!(h, u64::MAX);
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
            prop_assert!(err <= 0.5f64.powi(p as i32 + 1) + 1e-12, "v={} r={} err={}", v, r, err);
        }
    }
}
