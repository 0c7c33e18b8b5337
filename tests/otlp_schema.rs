//! The hand-written OTLP prost derives (`src/export/otlp/proto.rs`) against the official
//! `.proto` files (`proto/opentelemetry/`, opentelemetry-proto 1.10.0, compiled here by protox,
//! pure Rust):
//!
//! 1. every field of every derive has the official field's name, number, type (scalar kind,
//!    message or enum name) and cardinality (repeated, proto3 `optional`, oneof member), and
//!    every official field we leave out is on a short list with the reason;
//! 2. a request that sets every field decodes against the official descriptors with no unknown
//!    field anywhere, re-encodes to as many bytes (same wire types and packing) and back to the
//!    same request.

use std::{collections::BTreeMap, path::Path};

use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MessageDescriptor, Value};
use shardmetrics::export::otlp::proto::{self, *};

/// Official fields the derives leave out, and why.
const LEFT_OUT: &[(&str, &str, &str)] = &[
    ("KeyValue", "key_strindex", "profiling dictionary references"),
    ("AnyValue", "string_value_strindex", "profiling dictionary references"),
    ("Resource", "entity_refs", "entities (development), not sent"),
];

/// One field of a derive: (rust name, prost kind, cardinality, rust type, tag).
#[derive(Debug)]
struct Field {
    name: String,
    kind: String,
    repeated: bool,
    optional: bool,
    oneof: bool,
    type_name: String,
    tag: u32,
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect()
}

fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The derives of proto.rs, by message path within its package (`Metric`,
/// `ExponentialHistogramDataPoint.Buckets`): a small reader of the file's own layout.
fn derives() -> BTreeMap<String, Vec<Field>> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/export/otlp/proto.rs")).unwrap();
    enum Block {
        Mod(String),
        Message(String),
        Oneof(String),
        Other,
    }
    let mut stack: Vec<Block> = Vec::new();
    let mut out: BTreeMap<String, Vec<Field>> = BTreeMap::new();
    let mut attr: Option<String> = None;
    let mut derive = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("//") || t.is_empty() {
            continue;
        }
        if t.starts_with("#[derive(") {
            derive = t.to_owned();
            continue;
        }
        if let Some(a) = t.strip_prefix("#[prost(") {
            attr = (!a.contains("oneof =")).then(|| a.trim_end_matches(")]").to_owned());
            continue;
        }
        let module = || stack.iter().rev().find_map(|b| if let Block::Mod(m) = b { Some(m.clone()) } else { None });
        let owner = stack.iter().rev().find_map(|b| match b {
            Block::Message(m) | Block::Oneof(m) => Some((m.clone(), matches!(b, Block::Oneof(_)))),
            _ => None,
        });
        if let Some(a) = attr.take() {
            let (owner, oneof) = owner.expect("a #[prost] field outside a message");
            let (name, ty) = if oneof {
                let (variant, ty) = t.split_once('(').unwrap();
                (snake(variant), ty.trim_end_matches("),").to_owned())
            } else {
                let (name, ty) = t.strip_prefix("pub ").unwrap().split_once(": ").unwrap();
                (name.to_owned(), ty.trim_end_matches(',').to_owned())
            };
            let parts: Vec<&str> = a.split(", ").collect();
            let tag = a.split("tag = \"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
            let kind = parts[0].split(" = ").next().unwrap().to_owned();
            let enum_name = a.split("enumeration = \"").nth(1).map(|s| s.split('"').next().unwrap().to_owned());
            let inner = ty.trim_start_matches("Option<").trim_start_matches("Vec<").trim_end_matches('>');
            let type_name = enum_name.unwrap_or_else(|| inner.rsplit("::").next().unwrap().to_owned());
            out.entry(owner).or_default().push(Field {
                name,
                kind,
                repeated: parts.contains(&"repeated"),
                optional: parts.contains(&"optional") && ty.starts_with("Option<") && parts[0] != "message",
                oneof,
                type_name,
                tag,
            });
            continue;
        }
        let opens = t.matches('{').count();
        let closes = t.matches('}').count();
        let mut pushed = 0;
        if let Some(rest) = t.strip_prefix("pub mod ") {
            stack.push(Block::Mod(rest.trim_end_matches(" {").to_owned()));
            pushed = 1;
        } else if let Some(rest) = t.strip_prefix("pub struct ") {
            let name = rest.trim_end_matches(" {").to_owned();
            let path = module().map_or(name.clone(), |m| format!("{}.{name}", camel(&m)));
            out.entry(path.clone()).or_default();
            stack.push(Block::Message(path));
            pushed = 1;
        } else if t.starts_with("pub enum ") && derive.contains("Oneof") {
            stack.push(Block::Oneof(camel(&module().expect("a oneof lives in its message's module"))));
            pushed = 1;
        }
        for _ in pushed..opens {
            stack.push(Block::Other);
        }
        for _ in 0..closes {
            stack.pop();
        }
    }
    out
}

fn pool() -> DescriptorPool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/opentelemetry");
    let mut compiler = protox::Compiler::new([&dir]).unwrap();
    compiler.include_imports(true);
    compiler.open_file("opentelemetry/proto/collector/metrics/v1/metrics_service.proto").unwrap();
    compiler.descriptor_pool()
}

/// The message `path` (`Metric`, `ExponentialHistogramDataPoint.Buckets`) in any OTLP package.
fn message(pool: &DescriptorPool, path: &str) -> MessageDescriptor {
    let found: Vec<MessageDescriptor> = pool
        .all_messages()
        .filter(|m| m.full_name().strip_prefix(m.package_name()).map(|s| s.trim_start_matches('.')) == Some(path))
        .collect();
    assert_eq!(found.len(), 1, "{path}: {:?}", found.iter().map(|m| m.full_name().to_owned()).collect::<Vec<_>>());
    found[0].clone()
}

fn kind_name(k: &Kind) -> (String, String) {
    match k {
        Kind::Message(m) => ("message".into(), m.name().into()),
        Kind::Enum(e) => ("enumeration".into(), e.name().into()),
        other => (format!("{other:?}").to_ascii_lowercase(), String::new()),
    }
}

#[test]
fn every_hand_written_field_is_the_official_one() {
    let pool = pool();
    let derives = derives();
    assert!(derives.len() >= 24, "read {} derives: {:?}", derives.len(), derives.keys());
    let mut checked = 0;
    for (path, fields) in &derives {
        let desc = message(&pool, path);
        for f in fields {
            let official = desc
                .get_field_by_name(&f.name)
                .unwrap_or_else(|| panic!("{path}.{}: no such field in {}", f.name, desc.full_name()));
            let (kind, type_name) = kind_name(&official.kind());
            let what = format!("{path}.{}", f.name);
            assert_eq!(official.number(), f.tag, "{what}: number");
            assert_eq!(kind, f.kind, "{what}: type");
            if !type_name.is_empty() {
                assert_eq!(type_name, f.type_name, "{what}: type name");
            }
            assert_eq!(official.is_list(), f.repeated, "{what}: repeated");
            let real_oneof = official.containing_oneof().filter(|o| !o.is_synthetic());
            assert_eq!(real_oneof.is_some(), f.oneof, "{what}: oneof member");
            let proto3_optional = official.containing_oneof().is_some_and(|o| o.is_synthetic());
            assert_eq!(proto3_optional, f.optional, "{what}: proto3 optional");
            checked += 1;
        }
        for official in desc.fields() {
            let ours = fields.iter().any(|f| f.name == official.name());
            let left_out = LEFT_OUT.iter().any(|(m, n, why)| *m == path && *n == official.name() && !why.is_empty());
            assert!(ours || left_out, "{path}.{} (field {}) is not written out", official.name(), official.number());
        }
    }
    assert!(checked >= 90, "checked {checked} fields");
    // Every message a request can reach is a derive.
    let mut reach = vec![message(&pool, "ExportMetricsServiceRequest")];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(m) = reach.pop() {
        let path = m.full_name().strip_prefix(m.package_name()).unwrap().trim_start_matches('.').to_owned();
        if !seen.insert(path.clone()) {
            continue;
        }
        assert!(derives.contains_key(&path), "{path} is not written out");
        for f in m.fields() {
            let left_out = LEFT_OUT.iter().any(|(mm, n, why)| *mm == path && *n == f.name() && !why.is_empty());
            if let (Kind::Message(sub), false) = (f.kind(), left_out) {
                reach.push(sub);
            }
        }
    }
}

/// No field the official schema does not know, anywhere in `m`.
fn assert_no_unknown(m: &DynamicMessage, at: &str) {
    assert_eq!(m.unknown_fields().count(), 0, "{at}: unknown fields");
    for (f, v) in m.fields() {
        let at = format!("{at}.{}", f.name());
        match v {
            Value::Message(sub) => assert_no_unknown(sub, &at),
            Value::List(items) => {
                for i in items {
                    if let Value::Message(sub) = i {
                        assert_no_unknown(sub, &at);
                    }
                }
            }
            _ => {}
        }
    }
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(v) }) }
}

/// A request with every field and every oneof variant set to a non-default value.
fn everything() -> ExportMetricsServiceRequest {
    use any_value::Value as V;
    let attrs = vec![
        KeyValue::string("s", "x"),
        kv("b", V::BoolValue(true)),
        kv("i", V::IntValue(-7)),
        kv("d", V::DoubleValue(2.5)),
        kv("a", V::ArrayValue(ArrayValue { values: vec![AnyValue { value: Some(V::IntValue(1)) }] })),
        kv("m", V::KvlistValue(KeyValueList { values: vec![KeyValue::string("k", "v")] })),
        kv("y", V::BytesValue(vec![0, 1, 255])),
    ];
    let exemplar = |v| Exemplar {
        filtered_attributes: attrs.clone(),
        time_unix_nano: 5,
        value: Some(v),
        span_id: vec![1; 8],
        trace_id: vec![2; 16],
    };
    let exemplars = vec![exemplar(exemplar::Value::AsDouble(0.5)), exemplar(exemplar::Value::AsInt(-3))];
    let number = |v| NumberDataPoint {
        attributes: attrs.clone(),
        start_time_unix_nano: 1,
        time_unix_nano: 2,
        value: Some(v),
        exemplars: exemplars.clone(),
        flags: 1,
    };
    let temporality = AggregationTemporality::Cumulative as i32;
    let data = vec![
        metric::Data::Gauge(Gauge { data_points: vec![number(number_data_point::Value::AsDouble(-1.5))] }),
        metric::Data::Sum(Sum {
            data_points: vec![number(number_data_point::Value::AsInt(-9))],
            aggregation_temporality: temporality,
            is_monotonic: true,
        }),
        metric::Data::Histogram(proto::Histogram {
            data_points: vec![HistogramDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 6,
                sum: Some(0.0),
                bucket_counts: vec![1, 2, 3],
                explicit_bounds: vec![0.1, 1.0],
                exemplars: exemplars.clone(),
                flags: 1,
                min: Some(0.0),
                max: Some(9.0),
            }],
            aggregation_temporality: temporality,
        }),
        metric::Data::ExponentialHistogram(ExponentialHistogram {
            data_points: vec![ExponentialHistogramDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 7,
                sum: Some(3.0),
                scale: -2,
                zero_count: 1,
                positive: Some(exponential_histogram_data_point::Buckets { offset: -5, bucket_counts: vec![1, 0, 4] }),
                negative: Some(exponential_histogram_data_point::Buckets { offset: 3, bucket_counts: vec![1] }),
                flags: 1,
                exemplars: exemplars.clone(),
                min: Some(-1.0),
                max: Some(8.0),
                zero_threshold: 1e-9,
            }],
            aggregation_temporality: AggregationTemporality::Delta as i32,
        }),
        metric::Data::Summary(Summary {
            data_points: vec![SummaryDataPoint {
                attributes: attrs.clone(),
                start_time_unix_nano: 1,
                time_unix_nano: 2,
                count: 3,
                sum: 1.5,
                quantile_values: vec![summary_data_point::ValueAtQuantile { quantile: 0.5, value: 0.25 }],
                flags: 1,
            }],
        }),
    ];
    let metrics = data
        .into_iter()
        .map(|d| Metric {
            name: "m".into(),
            description: "d".into(),
            unit: "s".into(),
            data: Some(d),
            metadata: vec![KeyValue::string("meta", "1")],
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: attrs.clone(), dropped_attributes_count: 1 }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "shardmetrics".into(),
                    version: "1".into(),
                    attributes: attrs.clone(),
                    dropped_attributes_count: 2,
                }),
                metrics,
                schema_url: "https://opentelemetry.io/schemas/1.0.0".into(),
            }],
            schema_url: "https://opentelemetry.io/schemas/1.0.0".into(),
        }],
    }
}

#[test]
fn what_we_encode_decodes_against_the_official_schema_and_back() {
    let pool = pool();
    let req = everything();
    let bytes = req.encode_to_vec();
    let dynamic = DynamicMessage::decode(message(&pool, "ExportMetricsServiceRequest"), bytes.as_slice()).unwrap();
    assert_no_unknown(&dynamic, "request");
    // Same wire types and packing: the official encoding of what was decoded has our length
    // (it orders fields by number, prost by declaration, so the bytes may be permuted) and
    // decodes back to the request.
    let official = dynamic.encode_to_vec();
    assert_eq!(official.len(), bytes.len());
    assert!(ExportMetricsServiceRequest::decode(official.as_slice()).unwrap() == req, "round trip differs");
    // And a few values read back by their official names.
    let rm = dynamic.get_field_by_name("resource_metrics").unwrap();
    let Value::List(rms) = rm.as_ref() else { panic!() };
    let Value::Message(rm) = &rms[0] else { panic!() };
    let Value::List(sms) = rm.get_field_by_name("scope_metrics").unwrap().into_owned() else { panic!() };
    let Value::Message(sm) = &sms[0] else { panic!() };
    let Value::List(ms) = sm.get_field_by_name("metrics").unwrap().into_owned() else { panic!() };
    assert_eq!(ms.len(), 5);
    let Value::Message(eh) = &ms[3] else { panic!() };
    let eh = eh.get_field_by_name("exponential_histogram").unwrap().into_owned();
    let Value::Message(eh) = eh else { panic!() };
    let Value::List(points) = eh.get_field_by_name("data_points").unwrap().into_owned() else { panic!() };
    let Value::Message(p) = &points[0] else { panic!() };
    assert_eq!(p.get_field_by_name("scale").unwrap().as_i32(), Some(-2));
    assert_eq!(p.get_field_by_name("zero_threshold").unwrap().as_f64(), Some(1e-9));
    // And the response.
    let answer = ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess { rejected_data_points: 3, error_message: "x".into() }),
    };
    let bytes = answer.encode_to_vec();
    let dynamic = DynamicMessage::decode(message(&pool, "ExportMetricsServiceResponse"), bytes.as_slice()).unwrap();
    assert_no_unknown(&dynamic, "response");
    assert!(ExportMetricsServiceResponse::decode(dynamic.encode_to_vec().as_slice()).unwrap() == answer);
}
