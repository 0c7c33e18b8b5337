//! Bucket index cost: the log-linear index the shards use today beside the exponential
//! (native-histogram) keys of `exp_buckets`, in the same run, over the same values.
//!
//! The values are 4,096 log-normal latencies in nanoseconds (median 200 µs, σ = 1.5 in log
//! space: 90 % between 17 µs and 2.3 ms), generated once with a fixed seed, so the RNG is not
//! measured. Each value goes through `black_box`, so the compiler neither vectorises the loop
//! nor hoists anything out of it: one index per value, as on a record path.
//!
//! # Groups
//!
//! * `bucket_index`: the index alone, summed (ns per value): `loop_floor` (the loop, the
//!   `black_box` and one `and`: what every other variant pays besides its index), `loglinear_p5` (`buckets::index(v, 5)`), `exp_s3` / `exp_s5` / `exp_s8` (`exp_buckets::slot`),
//!   `exp_ns_to_s_s5` (`NANOS_TO_SECONDS.slot`, schema 5: the slot of the value in seconds, exact),
//!   `exp_f64_div_s5` (`key_f64(v as f64 / 1e9, 5)`: the naive seconds key, rounds first) and
//!   `client_golang_s5` (client_golang's algorithm: frexp, then a binary search in the row).
//! * `index_and_increment`: the index plus `counts[index] += 1` into a dense per-thread array
//!   sized for the layout: the record path without min/max/sum/count.
//!
//! # Instruction counts
//!
//! `SHARDMETRICS_CALLGRIND=<variant>:<passes>` runs `passes` passes over the values with one
//! variant of `bucket_index` and exits before criterion starts; run it under
//! `valgrind --tool=callgrind` with `passes` = 0 and N: the difference of the two totals over
//! `N · 4096` is the instructions per index (see BENCHMARKS.md).
//!
//! Run: `cargo bench --bench exp_buckets`; smoke test: `cargo bench --bench exp_buckets -- --test`.

use std::hint::black_box;

use criterion::{BenchmarkGroup, Criterion, Throughput};
use rand::{rngs::StdRng, Rng, SeedableRng};
use shardmetrics::__private::{self as buckets, exp_buckets as exp};

const N: usize = 4096;
/// Cells of the increment group's array: enough for every variant's indices (checked in `main`).
const SLOTS: usize = 16 << 10;

fn values() -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(16);
    (0..N)
        .map(|_| {
            // Box-Muller: one standard normal from two uniforms.
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(f64::MIN_POSITIVE), rng.random());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            ((200_000f64).ln() + 1.5 * z).exp().max(1.0) as u64
        })
        .collect()
}

/// client_golang's placement of `float64(v)` at schema `s`: `math.Frexp`, then
/// `sort.SearchFloat64s` in the schema's row of bounds.
#[inline(always)]
fn client_golang(v: u64, row: &[f64]) -> i32 {
    let x = v as f64;
    let bits = x.to_bits();
    let exp = (bits >> 52) as i32 - 1022;
    let frac = f64::from_bits((bits & !(0x7ff << 52)) | (1022 << 52));
    row.partition_point(|&b| b < frac) as i32 + (exp - 1) * row.len() as i32
}

fn row(s: u8) -> Vec<f64> {
    (0..1usize << s).map(|j| exp::FRACTIONS[j << (8 - s)]).collect()
}

/// Sums the indices of every value: one pass.
#[inline(always)]
fn pass(values: &[u64], f: &impl Fn(u64) -> usize) -> usize {
    let mut acc = 0usize;
    for &v in values {
        acc = acc.wrapping_add(f(black_box(v)));
    }
    acc
}

/// Expands to a monomorphised loop per variant (a `dyn Fn` call per value would be measured).
macro_rules! for_each_variant {
    ($m:ident, $($arg:expr),*) => {{
        let row5 = row(5);
        let off = 1100i32;
        $m!($($arg,)* "loop_floor", |v| (v & 1) as usize);
        $m!($($arg,)* "loglinear_p5", |v| buckets::index(v, 5));
        $m!($($arg,)* "exp_s3", |v| exp::slot(v, 3));
        $m!($($arg,)* "exp_s5", |v| exp::slot(v, 5));
        $m!($($arg,)* "exp_s8", |v| exp::slot(v, 8));
        $m!($($arg,)* "exp_ns_to_s_s5", |v| exp::NANOS_TO_SECONDS.slot(v));
        $m!($($arg,)* "exp_f64_div_s5", |v| (exp::key_f64(v as f64 / 1e9, 5) + off) as usize);
        $m!($($arg,)* "client_golang_s5", |v| client_golang(v, &row5) as usize);
    }};
}

fn bucket_index(c: &mut Criterion) {
    let values = values();
    let mut g = c.benchmark_group("bucket_index");
    g.throughput(Throughput::Elements(N as u64));
    macro_rules! bench {
        ($g:expr, $name:expr, $f:expr) => {{
            let f = $f;
            $g.bench_function($name, |b| b.iter(|| pass(&values, &f)));
        }};
    }
    for_each_variant!(bench, g);
    g.finish();
}

fn index_and_increment(c: &mut Criterion) {
    let values = values();
    let mut g: BenchmarkGroup<_> = c.benchmark_group("index_and_increment");
    g.throughput(Throughput::Elements(N as u64));
    let mut counts = vec![0u64; SLOTS];
    macro_rules! bench {
        ($g:expr, $name:expr, $f:expr) => {{
            let f = $f;
            $g.bench_function($name, |b| {
                b.iter(|| {
                    for &v in &values {
                        counts[f(black_box(v))] += 1;
                    }
                })
            });
        }};
    }
    for_each_variant!(bench, g);
    g.finish();
    black_box(&counts);
}

fn main() {
    if let Ok(spec) = std::env::var("SHARDMETRICS_CALLGRIND") {
        let (name, passes) = spec.split_once(':').expect("SHARDMETRICS_CALLGRIND=<variant>:<passes>");
        let passes: usize = passes.parse().expect("passes");
        let values = values();
        let (mut acc, mut found) = (0usize, false);
        macro_rules! run {
            ($want:expr, $name:expr, $f:expr) => {{
                if $want == $name {
                    let f = $f;
                    found = true;
                    for _ in 0..passes {
                        acc = acc.wrapping_add(pass(&values, &f));
                    }
                }
            }};
        }
        for_each_variant!(run, name);
        assert!(found, "unknown variant {name}");
        println!("{name}: {passes} passes of {N}, checksum {acc}");
        return;
    }
    // Every variant's indices fit the increment group's array.
    let values = values();
    macro_rules! check {
        ($name:expr, $f:expr) => {{
            let f = $f;
            assert!(values.iter().all(|&v| f(v) < SLOTS), "{}", $name);
        }};
    }
    for_each_variant!(check,);
    let mut c = Criterion::default().configure_from_args();
    bucket_index(&mut c);
    index_and_increment(&mut c);
    c.final_summary();
}
