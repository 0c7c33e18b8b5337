//! Sampling: the value of a [`Query`] in a [`Snapshot`], in base units with its dimension.

use super::expr::{Dim, Query, Stat};
use crate::{
    snapshot::{HistogramSnapshot, Value},
    Snapshot, Unit,
};

fn unit_dim(u: Unit) -> Dim {
    match u.base_name() {
        Some("seconds") => Dim::Time,
        Some("bytes") => Dim::Bytes,
        Some("ratio") => Dim::Ratio,
        _ => Dim::Plain,
    }
}

fn kind_name(v: Value) -> &'static str {
    match v {
        Value::Counter(_) => "a counter",
        Value::Gauge(_) => "a gauge",
        Value::Histogram(_) => "a histogram",
    }
}

fn hist_stat(h: &HistogramSnapshot, stat: Stat, scale: f64) -> Option<f64> {
    match stat {
        Stat::Count => Some(h.count() as f64),
        Stat::Rate => Some(h.rate()),
        Stat::Mean => h.mean().map(|m| m * scale),
        Stat::Min => h.min().map(|m| m as f64 * scale),
        Stat::Max => h.max().map(|m| m as f64 * scale),
        q => h.quantile(q.quantile()?).map(|v| v as f64 * scale),
    }
}

/// The statistic a query asks for, in base units with its dimension; `Ok(None)` without data,
/// `Err` when the query does not fit the metric.
pub(super) fn sample(q: &Query, snap: &Snapshot) -> Result<Option<(f64, Dim)>, String> {
    let labels: Vec<(&str, &str)> = q.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    if let Some(w) = q.window {
        let longest = snap.windows().last().copied().unwrap_or_default();
        if w > longest {
            return Err(format!(
                "window [{}] is longer than the registry keeps ({}): add it with RegistryBuilder::windows",
                crate::window::format_duration(w),
                crate::window::format_duration(longest)
            ));
        }
    }
    let win = q.window.map(|d| snap.window(d));
    let series = snap.find(&q.metric, &labels);
    let mismatch = |what: &str, v: Value| format!("{}() needs {what}, and `{}` is {}", q.stat, q.metric, kind_name(v));
    match q.stat {
        Stat::Value => {
            let Some(s) = series else { return Ok(None) };
            let u = s.family().unit();
            match s.value() {
                Value::Counter(c) => Ok(Some((c.total as f64 * u.to_base(), unit_dim(u)))),
                Value::Gauge(g) => Ok(Some((g * u.to_base(), unit_dim(u)))),
                v => Err(mismatch("a counter or a gauge (use count(), mean(), p99() … for histograms)", v)),
            }
        }
        Stat::Increase | Stat::Rate | Stat::Count | Stat::Mean | Stat::Min | Stat::Max => {
            hist_or_counter(q, snap, series, &labels, win.as_ref())
        }
        s if s.quantile().is_some() => hist_or_counter(q, snap, series, &labels, win.as_ref()),
        Stat::ErrorRate | Stat::SuccessRate | Stat::Throughput => {
            let stats = match &win {
                Some(w) => w.operation(&q.metric, &labels),
                None => snap.operation(&q.metric, &labels),
            };
            let Some(st) = stats else {
                return match series {
                    Some(s) => Err(mismatch("an operation (Registry::operation)", s.value())),
                    None => Ok(None),
                };
            };
            Ok(match q.stat {
                Stat::ErrorRate => st.error_rate.map(|r| (r, Dim::Ratio)),
                Stat::SuccessRate => st.success_rate.map(|r| (r, Dim::Ratio)),
                _ => Some((st.throughput, Dim::Plain)),
            })
        }
        Stat::HitRate => {
            let (hits, misses) = (format!("{}_hits_total", q.metric), format!("{}_misses_total", q.metric));
            let rate = match &win {
                Some(w) => match (w.counter(&hits, &labels), w.counter(&misses, &labels)) {
                    (Some(h), Some(m)) => {
                        let n = h.increase + m.increase;
                        (n > 0).then(|| h.increase as f64 / n as f64)
                    }
                    _ => return hit_rate_missing(q, series),
                },
                None => match snap.cache(&q.metric, &labels) {
                    Some(c) => c.hit_rate,
                    None => return hit_rate_missing(q, series),
                },
            };
            Ok(rate.map(|r| (r, Dim::Ratio)))
        }
        _ => Err(format!("{}() is not supported here", q.stat)),
    }
}

fn hit_rate_missing(q: &Query, series: Option<crate::snapshot::Series<'_>>) -> Result<Option<(f64, Dim)>, String> {
    match series {
        Some(s) => Err(format!(
            "hit_rate() needs a cache (Registry::cache_stats), and `{}` is {}",
            q.metric,
            kind_name(s.value())
        )),
        None => Ok(None),
    }
}

/// Counter stats (increase, rate) and histogram stats (count, rate, mean, min, max, quantiles)
/// of a series or of an operation's latency histogram (`{name}_duration`).
fn hist_or_counter(
    q: &Query,
    snap: &Snapshot,
    series: Option<crate::snapshot::Series<'_>>,
    labels: &[(&str, &str)],
    win: Option<&crate::window::Window<'_>>,
) -> Result<Option<(f64, Dim)>, String> {
    let op_name;
    let s = match series {
        Some(s) => s,
        None => {
            op_name = format!("{}_duration", q.metric);
            match snap.find(&op_name, labels) {
                Some(s) if matches!(s.value(), Value::Histogram(_)) => s,
                _ => return Ok(None),
            }
        }
    };
    let u = s.family().unit();
    let scale = u.to_base();
    match (s.value(), q.stat) {
        (Value::Counter(c), Stat::Increase | Stat::Rate) => {
            let (inc, rate) = match win {
                Some(w) => w.counter(s.name(), labels).map_or((0, 0.0), |wc| (wc.increase, wc.rate)),
                None => (c.delta, c.rate),
            };
            let v = if q.stat == Stat::Increase { inc as f64 } else { rate };
            Ok(Some((v * scale, unit_dim(u))))
        }
        (Value::Histogram(h), stat) if stat != Stat::Increase => {
            let dim = if matches!(stat, Stat::Count | Stat::Rate) { Dim::Plain } else { unit_dim(u) };
            let v = match win {
                Some(w) => w.histogram(s.name(), labels).and_then(|wh| hist_stat(&wh, stat, scale)),
                None => hist_stat(h, stat, scale),
            };
            Ok(v.map(|v| (v, dim)))
        }
        (v, Stat::Increase) => Err(format!("increase() needs a counter, and `{}` is {}", q.metric, kind_name(v))),
        (v, Stat::Rate) => {
            Err(format!("rate() needs a counter or a histogram, and `{}` is {}", q.metric, kind_name(v)))
        }
        (v, stat) => Err(format!("{stat}() needs a histogram or an operation, and `{}` is {}", q.metric, kind_name(v))),
    }
}
