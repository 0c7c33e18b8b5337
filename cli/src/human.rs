//! Numbers for people: durations (`850µs`, `1.23ms`), rates and counts with SI prefixes
//! (`12.3k`), bytes (`24.0MiB`), percentages, and text sparklines (`▁▂▅█`).
//!
//! Every function takes the value in its base unit (seconds, bytes, per second) and prints
//! `-` for a value that does not exist, never a made-up `0`.

/// A duration in seconds: `0`, `850ns`, `12.3µs`, `1.23ms`, `2.50s`, `3m05s`, `22.6h`, `3.2d`.
pub fn duration(seconds: Option<f64>) -> String {
    let Some(s) = seconds.filter(|s| s.is_finite() && *s >= 0.0) else { return "-".into() };
    if s == 0.0 {
        "0".into()
    } else if s < 1e-6 {
        format!("{:.0}ns", s * 1e9)
    } else if s < 1e-3 {
        precise(s * 1e6, "µs")
    } else if s < 1.0 {
        precise(s * 1e3, "ms")
    } else if s < 60.0 {
        format!("{s:.2}s")
    } else if s < 3600.0 {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    } else if s < 86_400.0 {
        format!("{:.1}h", s / 3600.0)
    } else {
        format!("{:.1}d", s / 86_400.0)
    }
}

/// Three significant digits: `1.23`, `12.3`, `123`.
fn precise(v: f64, unit: &str) -> String {
    if v < 10.0 {
        format!("{v:.2}{unit}")
    } else if v < 100.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.0}{unit}")
    }
}

/// A count or a rate with an SI prefix: `0`, `0.25`, `12.5`, `950`, `12.3k`, `4.56M`, `7.89G`.
pub fn si(v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite()) else { return "-".into() };
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a < 10.0 && a != a.trunc() {
        format!("{v:.2}")
    } else if a < 1000.0 && a != a.trunc() {
        format!("{v:.1}")
    } else if a < 1000.0 {
        format!("{v:.0}")
    } else if a < 1e6 {
        precise_signed(v / 1e3, "k")
    } else if a < 1e9 {
        precise_signed(v / 1e6, "M")
    } else if a < 1e12 {
        precise_signed(v / 1e9, "G")
    } else {
        precise_signed(v / 1e12, "T")
    }
}

fn precise_signed(v: f64, unit: &str) -> String {
    if v < 0.0 {
        format!("-{}", precise(-v, unit))
    } else {
        precise(v, unit)
    }
}

/// Bytes with binary prefixes: `512B`, `1.50KiB`, `24.0MiB`, `3.20GiB`.
pub fn bytes(v: Option<f64>) -> String {
    let Some(v) = v.filter(|v| v.is_finite() && *v >= 0.0) else { return "-".into() };
    const K: f64 = 1024.0;
    if v < K {
        format!("{v:.0}B")
    } else if v < K * K {
        precise(v / K, "KiB")
    } else if v < K * K * K {
        precise(v / (K * K), "MiB")
    } else {
        precise(v / (K * K * K), "GiB")
    }
}

/// A ratio as a percentage: `0%`, `0.12%`, `1.5%`, `42%`.
pub fn percent(ratio: Option<f64>) -> String {
    let Some(r) = ratio.filter(|r| r.is_finite()) else { return "-".into() };
    let p = r * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p.abs() < 1.0 {
        format!("{p:.2}%")
    } else if p.abs() < 10.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// What a series' values measure, guessed from its unit or name suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Seconds,
    Bytes,
    /// Seconds since the Unix epoch (`process_start_time_seconds`), shown as an age.
    Timestamp,
    Plain,
}

impl Measure {
    /// From a metric name's unit suffix (`_seconds`, `_bytes`), as Prometheus naming has it.
    pub fn from_name(name: &str) -> Measure {
        let base = name.strip_suffix("_total").unwrap_or(name);
        if base.ends_with("_time_seconds") || base.ends_with("_timestamp_seconds") {
            Measure::Timestamp
        } else if base.ends_with("_seconds") {
            Measure::Seconds
        } else if base.ends_with("_bytes") {
            Measure::Bytes
        } else {
            Measure::Plain
        }
    }

    /// Formats a per-second rate of this measure (`12.3k`, `4.00MiB/s`; time per second is a
    /// plain ratio).
    pub fn rate(self, v: Option<f64>) -> String {
        match (self, v) {
            (Measure::Bytes, Some(_)) => format!("{}/s", bytes(v)),
            _ => si(v),
        }
    }

    /// Formats a value of this measure.
    pub fn format(self, v: Option<f64>) -> String {
        match self {
            Measure::Seconds => duration(v),
            Measure::Bytes => bytes(v),
            Measure::Timestamp => age(v, std::time::SystemTime::now()),
            Measure::Plain => si(v),
        }
    }
}

/// A Unix timestamp as its distance from `now`: `3.2h ago`, `in 5.00s`, `never` for 0.
pub fn age(unix_seconds: Option<f64>, now: std::time::SystemTime) -> String {
    let Some(t) = unix_seconds.filter(|t| t.is_finite()) else { return "-".into() };
    if t == 0.0 {
        return "never".into();
    }
    let now = now.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    if now >= t {
        format!("{} ago", duration(Some(now - t)))
    } else {
        format!("in {}", duration(Some(t - now)))
    }
}

/// Eight-level block sparkline of the last `width` points, scaled to their maximum. Missing
/// points are blanks; an all-zero series is a flat `▁` line.
pub fn sparkline(points: impl DoubleEndedIterator<Item = Option<f64>>, width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let mut last: Vec<Option<f64>> = points.rev().take(width).collect();
    last.reverse();
    let max = last.iter().flatten().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    last.iter()
        .map(|p| match p {
            Some(v) if v.is_finite() && max > 0.0 => BARS[((v.max(0.0) / max) * 7.0).round().clamp(0.0, 7.0) as usize],
            Some(v) if v.is_finite() => BARS[0],
            _ => ' ',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(None), "-");
        assert_eq!(duration(Some(0.0)), "0");
        assert_eq!(duration(Some(850e-9)), "850ns");
        assert_eq!(duration(Some(12.34e-6)), "12.3µs");
        assert_eq!(duration(Some(1.234e-3)), "1.23ms");
        assert_eq!(duration(Some(0.25)), "250ms");
        assert_eq!(duration(Some(2.5)), "2.50s");
        assert_eq!(duration(Some(185.0)), "3m05s");
        assert_eq!(duration(Some(81_234.0)), "22.6h");
        assert_eq!(duration(Some(3.0 * 86_400.0)), "3.0d");
        assert_eq!(duration(Some(f64::NAN)), "-");
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(si(Some(0.0)), "0");
        assert_eq!(si(Some(0.25)), "0.25");
        assert_eq!(si(Some(12.5)), "12.5");
        assert_eq!(si(Some(950.0)), "950");
        assert_eq!(si(Some(12_345.0)), "12.3k");
        assert_eq!(si(Some(4_560_000.0)), "4.56M");
        assert_eq!(si(Some(-2500.0)), "-2.50k");
        assert_eq!(si(None), "-");
    }

    #[test]
    fn bytes_and_percent() {
        assert_eq!(bytes(Some(512.0)), "512B");
        assert_eq!(bytes(Some(1536.0)), "1.50KiB");
        assert_eq!(bytes(Some(24.0 * 1024.0 * 1024.0)), "24.0MiB");
        assert_eq!(percent(Some(0.0012)), "0.12%");
        assert_eq!(percent(Some(0.015)), "1.5%");
        assert_eq!(percent(Some(0.42)), "42%");
        assert_eq!(percent(None), "-");
    }

    #[test]
    fn sparklines() {
        let s = sparkline([Some(0.0), Some(1.0), Some(2.0), None, Some(4.0)].into_iter(), 10);
        assert_eq!(s, "▁▃▅ █");
        assert_eq!(sparkline([Some(1.0), Some(2.0), Some(3.0)].into_iter(), 2), "▆█");
        assert_eq!(sparkline([Some(0.0), Some(0.0)].into_iter(), 4), "▁▁");
    }

    #[test]
    fn measures() {
        assert_eq!(Measure::from_name("http_request_duration_seconds"), Measure::Seconds);
        assert_eq!(Measure::from_name("process_cpu_seconds_total"), Measure::Seconds);
        assert_eq!(Measure::from_name("process_resident_memory_bytes"), Measure::Bytes);
        assert_eq!(Measure::from_name("queue_depth"), Measure::Plain);
        assert_eq!(Measure::from_name("process_start_time_seconds"), Measure::Timestamp);
        assert_eq!(Measure::from_name("node_boot_time_seconds"), Measure::Timestamp);
        let now = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(age(Some(1_000_000.0 - 3.0 * 3600.0), now), "3.0h ago");
        assert_eq!(age(Some(1_000_005.0), now), "in 5.00s");
        assert_eq!(age(Some(0.0), now), "never");
        assert_eq!(Measure::Bytes.rate(Some(2048.0)), "2.00KiB/s");
        assert_eq!(Measure::Bytes.rate(None), "-");
        assert_eq!(Measure::Seconds.rate(Some(0.5)), "0.50");
    }
}
