//! Number formatting shared by the tables and the chart labels.

/// Three significant figures, thousands separated: `0.643`, `2.03`, `40.6`, `1,234`.
pub fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor() as i32;
    let decimals = (2 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    group_thousands(&s)
}

/// Three significant figures, with `k`/`M` from 10,000 up so bar labels stay short: `950`,
/// `9,500`, `12.0k`, `1.50M`.
pub fn compact(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", sig3(v / 1e6)),
        a if a >= 1e4 => format!("{}k", sig3(v / 1e3)),
        _ => sig3(v),
    }
}

/// A duration given in ns with a unit: `850 ns`, `12.3 µs`, `4.56 ms`, `1.20 s`.
pub fn duration(ns: f64) -> String {
    let (v, unit) = in_unit(ns);
    format!("{} {unit}", sig3(v))
}

/// A duration for axis labels, no trailing zeros: `20 µs`, `1.5 ms`.
pub fn duration_short(ns: f64) -> String {
    let (v, unit) = in_unit(ns);
    format!("{} {unit}", trim(v))
}

fn in_unit(ns: f64) -> (f64, &'static str) {
    match ns.abs() {
        a if a < 1e3 => (ns, "ns"),
        a if a < 1e6 => (ns / 1e3, "µs"),
        a if a < 1e9 => (ns / 1e6, "ms"),
        _ => (ns / 1e9, "s"),
    }
}

/// A count in short form for axis labels: `100`, `10k`, `2.5M`.
pub fn count(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(v / 1e6)),
        a if a >= 1e3 => format!("{}k", trim(v / 1e3)),
        _ => trim(v),
    }
}

/// `10000` as `10,000` (for table headers).
pub fn thousands(n: u64) -> String {
    group_thousands(&n.to_string())
}

/// Up to two decimals, trailing zeros dropped: `2.5`, `10`, `0.01`.
fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn group_thousands(s: &str) -> String {
    let (sign, rest) = s.strip_prefix('-').map_or(("", s), |r| ("-", r));
    let (int, frac) = rest.split_once('.').map_or((rest, None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{out}.{f}"),
        None => format!("{sign}{out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(sig3(0.6431), "0.643");
        assert_eq!(sig3(2.034), "2.03");
        assert_eq!(sig3(40.61), "40.6");
        assert_eq!(sig3(999.6), "1,000");
        assert_eq!(sig3(1234.4), "1,234");
        assert_eq!(sig3(0.0), "0");
        assert_eq!(compact(9_500.0), "9,500");
        assert_eq!(compact(12_000.0), "12.0k");
        assert_eq!(compact(1_500_000.0), "1.50M");
        assert_eq!(duration(850.0), "850 ns");
        assert_eq!(duration(12_345.0), "12.3 µs");
        assert_eq!(duration(4_560_000.0), "4.56 ms");
        assert_eq!(duration(1.2e9), "1.20 s");
        assert_eq!(duration_short(20_000.0), "20 µs");
        assert_eq!(duration_short(1_500_000.0), "1.5 ms");
        assert_eq!(count(100.0), "100");
        assert_eq!(count(10_000.0), "10k");
        assert_eq!(count(2_500_000.0), "2.5M");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(100), "100");
    }
}
