//! Prometheus protobuf exposition format: a stream of length-delimited (varint length prefix)
//! `io.prometheus.client.MetricFamily` messages, the format Prometheus asks for first when
//! native histograms are enabled (`--enable-feature=native-histograms`).
//!
//! The same series, names and values as the [Prometheus text render](super::prometheus), so a
//! Prometheus server stores the same series from either format:
//!
//! * counters: family `COUNTER` named as in the text (with `_total`), which is the name
//!   Prometheus stores the series under (its protobuf parser appends nothing to a counter's
//!   name), as client_golang does with counters registered as `…_total`; values in the base
//!   unit; the series' latest exemplar, if any;
//! * gauges (and StateSets, which have no protobuf type of their own: one gauge series per
//!   state, the state in a label named after the family, as in the text): `GAUGE`;
//! * histograms: `HISTOGRAM` with the configured classic buckets (`le` bounds in the exported
//!   unit, the counts the text renders show, the same code), `sample_count`, `sample_sum` in the
//!   base unit, and each bucket's latest exemplar. The `+Inf` bucket is implicit (the count)
//!   unless it has an exemplar, as client_golang does. Beside them, the native histogram: the
//!   recorded base-2 exponential buckets exactly (schema = the histogram's precision, zero
//!   threshold 0, positive spans and delta-encoded counts), for histograms exported in their
//!   recorded unit; those recorded in ns, µs or ms are classic only for now (see `native.rs`);
//! * a histogram's quantile series: a `SUMMARY` family `…_quantiles`, quantiles over the
//!   family's quantile window, cumulative count and sum;
//! * `help` when set; `unit` when the OpenMetrics render writes `# UNIT` (the family name ends in
//!   `_<unit>`, the rule Prometheus checks a protobuf unit against).
//!
//! No timestamps and no created timestamps: the text renders have neither.
//!
//! The encoder writes the wire format directly (`wire.rs`), without building the messages; the
//! messages in [`proto`] are for reading it back ([`decode`]).
//!
//! ```
//! use shardmetrics::{export::protobuf, Registry};
//!
//! let registry = Registry::new();
//! registry.counter("jobs_total").help("Jobs run").build()?.add(3);
//! registry.flush();
//! let body = protobuf::render(&registry.snapshot());
//! let families = protobuf::decode(&body)?;
//! assert_eq!(families[0].name.as_deref(), Some("jobs_total"));
//! assert_eq!(families[0].metric[0].counter.as_ref().and_then(|c| c.value), Some(3.0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod proto;
mod wire;

use std::time::UNIX_EPOCH;

use super::native::{self, NativeBuckets};
use proto::MetricType;

use crate::{
    exemplar::Exemplar,
    export::classic_buckets,
    snapshot::{FamilyInfo, Series, SeriesList, Snapshot, Value},
    Kind, Unit,
};

/// The Content-Type of this format.
pub const CONTENT_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Encodes the snapshot as length-delimited `MetricFamily` messages.
pub fn render(snapshot: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    render_into(snapshot, &mut out);
    out
}

/// [`render`], appended to `out` (a reused buffer: see
/// [`crate::export::prometheus::render_into`] for why).
pub fn render_into(snapshot: &Snapshot, out: &mut Vec<u8>) {
    out.reserve(snapshot.series().len() * 40);
    for family in snapshot.families() {
        write_family(out, snapshot, family);
    }
}

/// Decodes a body of length-delimited `MetricFamily` messages (what [`render`] writes, or any
/// Prometheus client's protobuf exposition).
pub fn decode(mut body: &[u8]) -> Result<Vec<proto::MetricFamily>, prost::DecodeError> {
    use prost::Message;
    let mut families = Vec::new();
    while !body.is_empty() {
        families.push(proto::MetricFamily::decode_length_delimited(&mut body)?);
    }
    Ok(families)
}

// Field numbers (proto/metrics.proto).
mod field {
    pub(super) const FAMILY_NAME: u32 = 1;
    pub(super) const FAMILY_HELP: u32 = 2;
    pub(super) const FAMILY_TYPE: u32 = 3;
    pub(super) const FAMILY_METRIC: u32 = 4;
    pub(super) const FAMILY_UNIT: u32 = 5;
    pub(super) const METRIC_LABEL: u32 = 1;
    pub(super) const METRIC_GAUGE: u32 = 2;
    pub(super) const METRIC_COUNTER: u32 = 3;
    pub(super) const METRIC_SUMMARY: u32 = 4;
    pub(super) const METRIC_HISTOGRAM: u32 = 7;
    pub(super) const GAUGE_VALUE: u32 = 1;
    pub(super) const COUNTER_VALUE: u32 = 1;
    pub(super) const COUNTER_EXEMPLAR: u32 = 2;
    pub(super) const SUMMARY_COUNT: u32 = 1;
    pub(super) const SUMMARY_SUM: u32 = 2;
    pub(super) const SUMMARY_QUANTILE: u32 = 3;
    pub(super) const QUANTILE_QUANTILE: u32 = 1;
    pub(super) const QUANTILE_VALUE: u32 = 2;
    pub(super) const HISTOGRAM_COUNT: u32 = 1;
    pub(super) const HISTOGRAM_SUM: u32 = 2;
    pub(super) const HISTOGRAM_BUCKET: u32 = 3;
    pub(super) const HISTOGRAM_SCHEMA: u32 = 5;
    pub(super) const HISTOGRAM_ZERO_THRESHOLD: u32 = 6;
    pub(super) const HISTOGRAM_ZERO_COUNT: u32 = 7;
    pub(super) const HISTOGRAM_POSITIVE_SPAN: u32 = 12;
    pub(super) const HISTOGRAM_POSITIVE_DELTA: u32 = 13;
    pub(super) const BUCKET_COUNT: u32 = 1;
    pub(super) const BUCKET_UPPER_BOUND: u32 = 2;
    pub(super) const BUCKET_EXEMPLAR: u32 = 3;
    pub(super) const SPAN_OFFSET: u32 = 1;
    pub(super) const SPAN_LENGTH: u32 = 2;
    pub(super) const EXEMPLAR_LABEL: u32 = 1;
    pub(super) const EXEMPLAR_VALUE: u32 = 2;
    pub(super) const EXEMPLAR_TIMESTAMP: u32 = 3;
    pub(super) const TIMESTAMP_SECONDS: u32 = 1;
    pub(super) const TIMESTAMP_NANOS: u32 = 2;
}

fn write_family(out: &mut Vec<u8>, snapshot: &Snapshot, series: SeriesList<'_>) {
    let Some(info) = series.first().map(|s| s.family()) else { return };
    let headers = info.headers();
    let kind = match info.kind() {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram => MetricType::Histogram,
    };
    wire::delimited(out, |out| {
        write_header(out, &headers.prom_name, info.help(), kind);
        for s in series {
            wire::message(out, field::FAMILY_METRIC, |out| write_metric(out, s, info));
        }
        if let Some(unit) = headers.om_unit {
            wire::string(out, field::FAMILY_UNIT, unit);
        }
    });
    let (Some(qs), Some(quantiles)) = (info.quantiles(), &headers.quantiles) else { return };
    let unit = info.unit();
    wire::delimited(out, |out| {
        write_header(out, &quantiles.name, &quantiles.help, MetricType::Summary);
        crate::export::for_each_quantile_series(snapshot, series, |s, cumulative, h| {
            wire::message(out, field::FAMILY_METRIC, |out| {
                write_labels(out, s);
                wire::message(out, field::METRIC_SUMMARY, |out| {
                    wire::uint64(out, field::SUMMARY_COUNT, cumulative.count());
                    wire::double(out, field::SUMMARY_SUM, unit.value_in_base(cumulative.sum()));
                    for &q in qs {
                        wire::message(out, field::SUMMARY_QUANTILE, |out| {
                            wire::double(out, field::QUANTILE_QUANTILE, q);
                            // An empty histogram's quantiles are NaN, as in the text renders.
                            let v = h.quantile(q).map_or(f64::NAN, |v| unit.value_in_base(v));
                            wire::double(out, field::QUANTILE_VALUE, v);
                        });
                    }
                });
            });
        });
    });
}

fn write_header(out: &mut Vec<u8>, name: &str, help: &str, kind: MetricType) {
    wire::string(out, field::FAMILY_NAME, name);
    if !help.is_empty() {
        wire::string(out, field::FAMILY_HELP, help);
    }
    wire::uint64(out, field::FAMILY_TYPE, kind as u64);
}

fn write_labels(out: &mut Vec<u8>, s: Series<'_>) {
    for (name, value) in s.labels().iter() {
        write_label_pair(out, field::METRIC_LABEL, name, value);
    }
}

#[inline]
fn write_label_pair(out: &mut Vec<u8>, field: u32, name: &str, value: &str) {
    wire::label_pair(out, field, name, value);
}

fn write_metric(out: &mut Vec<u8>, s: Series<'_>, info: &FamilyInfo) {
    write_labels(out, s);
    let unit = info.unit();
    let exemplars = s.exemplars();
    let exemplar = |i: usize| exemplars.get(i).and_then(Option::as_deref);
    match s.value() {
        Value::Counter(c) => wire::message(out, field::METRIC_COUNTER, |out| {
            // Counters in a time unit are exported in seconds, as in the text formats.
            wire::double(out, field::COUNTER_VALUE, unit.value_in_base(c.total));
            if let Some(e) = exemplar(0) {
                wire::message(out, field::COUNTER_EXEMPLAR, |out| write_exemplar(out, e, unit));
            }
        }),
        Value::Gauge(g) => wire::message(out, field::METRIC_GAUGE, |out| wire::double(out, field::GAUGE_VALUE, g)),
        Value::Histogram(h) => wire::message(out, field::METRIC_HISTOGRAM, |out| {
            wire::uint64(out, field::HISTOGRAM_COUNT, h.count());
            wire::double(out, field::HISTOGRAM_SUM, unit.value_in_base(h.sum()));
            let buckets = classic_buckets(info, h);
            let inf = buckets.len();
            for (i, (bound, count)) in buckets.enumerate() {
                write_bucket(out, bound, count, exemplar(i), unit);
            }
            // The `+Inf` bucket is implied by the count; written only to carry its exemplar.
            if let Some(e) = exemplar(inf) {
                write_bucket(out, f64::INFINITY, h.count(), Some(e), unit);
            }
            if let Some(native) = native::native_buckets(info, h) {
                write_native(out, &native);
            }
        }),
    }
}

fn write_bucket(out: &mut Vec<u8>, bound: f64, count: u64, exemplar: Option<&Exemplar>, unit: Unit) {
    wire::message(out, field::HISTOGRAM_BUCKET, |out| {
        wire::uint64(out, field::BUCKET_COUNT, count);
        wire::double(out, field::BUCKET_UPPER_BOUND, bound);
        if let Some(e) = exemplar {
            wire::message(out, field::BUCKET_EXEMPLAR, |out| write_exemplar(out, e, unit));
        }
    });
}

/// An exemplar's labels, value (in the base unit) and timestamp (to the nanosecond; the text
/// format's is in milliseconds).
fn write_exemplar(out: &mut Vec<u8>, e: &Exemplar, unit: Unit) {
    for (name, value) in e.labels() {
        write_label_pair(out, field::EXEMPLAR_LABEL, name, value);
    }
    wire::double(out, field::EXEMPLAR_VALUE, unit.value_in_base(e.value()));
    let t = e.timestamp().duration_since(UNIX_EPOCH).unwrap_or_default();
    // `google.protobuf.Timestamp` is proto3: a zero field is left out, as any encoder does.
    wire::message(out, field::EXEMPLAR_TIMESTAMP, |out| {
        if t.as_secs() != 0 {
            wire::int64(out, field::TIMESTAMP_SECONDS, i64::try_from(t.as_secs()).unwrap_or(i64::MAX));
        }
        if t.subsec_nanos() != 0 {
            wire::int32(out, field::TIMESTAMP_NANOS, t.subsec_nanos() as i32);
        }
    });
}

/// The native part of a histogram message: schema, zero bucket, positive spans and their
/// delta-encoded counts. A native histogram with no buckets and no zero bucket gets a no-op
/// span (offset 0, length 0), which tells it apart from a classic histogram.
/// The histogram's count and sum, written beside, are shared with the classic buckets.
fn write_native(out: &mut Vec<u8>, native: &impl NativeBuckets) {
    wire::sint64(out, field::HISTOGRAM_SCHEMA, i64::from(native.schema()));
    wire::double(out, field::HISTOGRAM_ZERO_THRESHOLD, native.zero_threshold());
    wire::uint64(out, field::HISTOGRAM_ZERO_COUNT, native.zero_count());
    // Spans first (one pass), then the deltas (a second pass): the field order of the schema.
    let mut any = false;
    native::for_each_span(native, |offset, length| {
        any = true;
        wire::message(out, field::HISTOGRAM_POSITIVE_SPAN, |out| {
            wire::sint64(out, field::SPAN_OFFSET, i64::from(offset));
            wire::uint64(out, field::SPAN_LENGTH, u64::from(length));
        });
    });
    if !any && native.zero_threshold() == 0.0 && native.zero_count() == 0 {
        wire::message(out, field::HISTOGRAM_POSITIVE_SPAN, |out| {
            wire::sint64(out, field::SPAN_OFFSET, 0);
            wire::uint64(out, field::SPAN_LENGTH, 0);
        });
    }
    // Unpacked, one field per delta: `metrics.proto` is proto2, whose repeated scalars are not
    // packed, so this is what client_golang writes and what prost re-encodes to (decoders read
    // either encoding).
    for delta in native::deltas(native) {
        wire::sint64(out, field::HISTOGRAM_POSITIVE_DELTA, delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Native buckets from a list, standing in for the exponential layout.
    struct Fixed {
        zero_threshold: f64,
        zero_count: u64,
        buckets: Vec<(i32, u64)>,
    }

    impl NativeBuckets for Fixed {
        fn schema(&self) -> i32 {
            3
        }
        fn zero_threshold(&self) -> f64 {
            self.zero_threshold
        }
        fn zero_count(&self) -> u64 {
            self.zero_count
        }
        fn positive(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
            self.buckets.iter().copied()
        }
    }

    fn encode(native: &Fixed) -> proto::Histogram {
        use prost::Message;
        let mut out = Vec::new();
        write_native(&mut out, native);
        proto::Histogram::decode(out.as_slice()).unwrap()
    }

    /// Expands spans and deltas back into `(index, count)` of the non-empty buckets.
    fn expand(h: &proto::Histogram) -> Vec<(i32, u64)> {
        let mut out = Vec::new();
        let (mut index, mut count, mut deltas) = (0i32, 0i64, h.positive_delta.iter());
        for span in &h.positive_span {
            // The first offset is an index, later ones the gap after the previous span.
            index += span.offset.unwrap();
            for _ in 0..span.length.unwrap() {
                count += deltas.next().unwrap();
                if count != 0 {
                    out.push((index, count as u64));
                }
                index += 1;
            }
        }
        assert!(deltas.next().is_none(), "more deltas than buckets in spans");
        out
    }

    #[test]
    fn spans_and_deltas_round_trip() {
        for buckets in [
            vec![(0, 1)],
            vec![(-3, 5), (-2, 2), (4, 7)],
            vec![(1, 4), (3, 1), (6, 9), (7, 9), (100, 1)],
            vec![(10, 3), (12, 3), (13, 1), (16, 2), (20, 8)],
        ] {
            let h = encode(&Fixed { zero_threshold: 1e-9, zero_count: 2, buckets: buckets.clone() });
            assert_eq!(h.schema, Some(3));
            assert_eq!(h.zero_threshold, Some(1e-9));
            assert_eq!(h.zero_count, Some(2));
            assert_eq!(expand(&h), buckets, "{h:?}");
            assert!(h.negative_span.is_empty() && h.negative_delta.is_empty());
        }
        // Gaps of up to two empty buckets stay in the span; wider gaps start a new one.
        let h = encode(&Fixed { zero_threshold: 0.0, zero_count: 0, buckets: vec![(1, 4), (4, 1), (8, 2)] });
        let spans: Vec<_> = h.positive_span.iter().map(|s| (s.offset.unwrap(), s.length.unwrap())).collect();
        assert_eq!(spans, [(1, 4), (3, 1)]);
        assert_eq!(h.positive_delta, [4, -4, 0, 1, 1]);
    }

    /// The encoded native histogram decodes (prost, the official messages) to the snapshot's
    /// exponential buckets: schema, zero bucket, spans and deltas, count and sum.
    #[test]
    fn native_buckets_decode_to_the_snapshot() {
        let r = crate::Registry::builder().manual().build();
        let items = r.histogram("pb_native_items").precision(3).build().unwrap();
        let bytes = r.histogram("pb_native_bytes").unit(Unit::Bytes).build().unwrap();
        let empty = r.histogram("pb_native_empty").build().unwrap();
        let nanos = r.histogram("pb_native_latency").unit(Unit::Nanoseconds).build().unwrap();
        for v in [0, 0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100, 1_000, 1_000, 1 << 40, u64::MAX] {
            items.record(v);
            bytes.record(v);
        }
        nanos.record(1_000);
        let snap = r.flush();
        let _ = empty;
        let families = decode(&render(&snap)).unwrap();
        let find = |name: &str| {
            let f = families.iter().find(|f| f.name.as_deref() == Some(name)).unwrap_or_else(|| panic!("{name}"));
            f.metric[0].histogram.clone().expect("a histogram")
        };
        for (name, schema) in [("pb_native_items", 3), ("pb_native_bytes", 5), ("pb_native_empty", 5)] {
            let h = find(name);
            let ours = snap.histogram(name, &[]).unwrap();
            let (s, zero, positive) = ours.native();
            assert_eq!(i32::from(s), schema);
            assert_eq!(h.schema, Some(schema), "{name}");
            assert_eq!(h.zero_threshold, Some(0.0), "{name}");
            assert_eq!(h.zero_count, Some(zero), "{name}");
            let positive: Vec<_> = positive.collect();
            assert_eq!(expand(&h), positive, "{name}: {h:?}");
            assert_eq!(h.sample_count, Some(ours.count()));
            assert_eq!(zero + positive.iter().map(|&(_, n)| n).sum::<u64>(), ours.count());
            assert!(h.negative_span.is_empty() && h.negative_delta.is_empty());
            // Only buckets that hold an integer can have counted a `u64`.
            for &(k, _) in &positive {
                let (lo, hi) =
                    (crate::exp_buckets::lowest(k, schema as i8), crate::exp_buckets::highest(k, schema as i8));
                assert!(lo <= hi, "{name}: bucket {k} holds no integer");
            }
            if name == "pb_native_empty" {
                assert_eq!(h.positive_span, [proto::BucketSpan { offset: Some(0), length: Some(0) }]);
            } else {
                assert_eq!(zero, 2);
                // 1 is key 0; 2, 4, 8, 16 are the top of keys 2^s·{1, 2, 3, 4}; u64::MAX is the last.
                let keys: Vec<i32> = positive.iter().map(|&(k, _)| k).collect();
                assert_eq!(keys.first(), Some(&0));
                assert_eq!(keys.last(), Some(&(64 << schema)));
                for e in 1..=4 {
                    assert!(keys.contains(&(e << schema)), "{name}: 2^{e}");
                }
            }
        }
        // Recorded in ns, exported in seconds: no native part yet (classic only).
        let h = find("pb_native_latency_seconds");
        assert_eq!((h.schema, h.zero_threshold, h.positive_span.len()), (None, None, 0));
        assert!(!h.bucket.is_empty());
    }

    #[test]
    fn an_empty_native_histogram_has_a_no_op_span() {
        let h = encode(&Fixed { zero_threshold: 0.0, zero_count: 0, buckets: vec![] });
        assert_eq!(h.positive_span, [proto::BucketSpan { offset: Some(0), length: Some(0) }]);
        assert!(h.positive_delta.is_empty());
        // With a zero bucket it is already told apart from a classic histogram.
        let h = encode(&Fixed { zero_threshold: 1e-3, zero_count: 0, buckets: vec![] });
        assert!(h.positive_span.is_empty());
    }
}
