//! Exporters. Every one reads only an `Arc<Snapshot>`; none touches a shard or blocks
//! recording.

#![forbid(unsafe_code)]

// The background exporters run std threads of their own; the loom build compiles only the core.
#[cfg(not(shardmetrics_loom))]
pub mod file;
#[cfg(feature = "json")]
pub mod json;
pub mod prometheus;
#[cfg(all(feature = "push", not(shardmetrics_loom)))]
pub mod pushgateway;
#[cfg(all(feature = "remote-write", not(shardmetrics_loom)))]
pub mod remote_write;
#[cfg(not(shardmetrics_loom))]
pub mod retry;

/// Escapes a label value for the Prometheus / OpenMetrics text formats: `\` → `\\`,
/// `"` → `\"`, newline → `\n`.
pub(crate) fn escape_label_value(out: &mut String, v: &str) {
    if !v.contains(['\\', '"', '\n']) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Escapes HELP text: `\` → `\\`, newline → `\n`.
pub(crate) fn escape_help(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes a float the way Prometheus parsers expect: `NaN`, `+Inf`, `-Inf`, otherwise the
/// shortest round-tripping decimal (never Rust's `inf`).
pub(crate) fn write_f64(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v == v.trunc() && v.abs() < 1e15 {
        // Integral values print without a fraction ("3", not "3.0").
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        out.push_str(ryu::Buffer::new().format_finite(v));
    }
}

/// Writes an unsigned integer.
#[inline]
pub(crate) fn write_u64(out: &mut String, v: u64) {
    out.push_str(itoa::Buffer::new().format(v));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats() {
        let f = |v| {
            let mut s = String::new();
            write_f64(&mut s, v);
            s
        };
        assert_eq!(f(f64::NAN), "NaN");
        assert_eq!(f(f64::INFINITY), "+Inf");
        assert_eq!(f(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f(3.0), "3");
        assert_eq!(f(-2.0), "-2");
        assert_eq!(f(0.25), "0.25");
        assert_eq!(f(1e-6), "1e-6");
        assert_eq!(f(1e300).parse::<f64>().unwrap(), 1e300);
        assert_eq!(f(-0.0), "0");
    }

    #[test]
    fn escapes() {
        let mut s = String::new();
        escape_label_value(&mut s, "a\\b\"c\nd");
        assert_eq!(s, r#"a\\b\"c\nd"#);
        let mut h = String::new();
        escape_help(&mut h, "x\\y\n\"z\"");
        assert_eq!(h, r#"x\\y\n"z""#);
    }
}
