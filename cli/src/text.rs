//! Plain-text views of a [`Model`]: the periodic table `--no-tui` prints (pipes, CI logs) and
//! the one-scrape `report` with its warnings.

use std::fmt::Write as _;

use super::{
    human::{self, Measure},
    model::{LatencyRow, Model, Sort},
};

/// Thresholds above which `report` warns.
#[derive(Debug, Clone, Copy)]
pub struct Thresholds {
    /// Error ratio (0.05 = 5 %).
    pub error_rate: f64,
    /// p99 in seconds.
    pub p99: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { error_rate: 0.05, p99: 1.0 }
    }
}

fn name_width<'a>(names: impl Iterator<Item = &'a String>) -> usize {
    names.map(|n| n.chars().count()).max().unwrap_or(10).clamp(10, NAME_MAX)
}

/// The widest name column a plain table uses.
const NAME_MAX: usize = 56;

/// The latency table: `operation calls/s calls err% p50 p90 p99 max`.
fn latency_table(out: &mut String, rows: &[&LatencyRow], indent: &str) {
    let names: Vec<String> = rows.iter().map(|r| r.key.fit(NAME_MAX)).collect();
    let w = name_width(names.iter());
    let _ = writeln!(
        out,
        "{indent}{:<w$} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "operation", "calls/s", "calls", "err%", "p50", "p90", "p99", "max"
    );
    for (r, name) in rows.iter().zip(&names) {
        let err =
            if r.errors.is_some() || r.error_rate.is_some() { human::percent(r.error_rate) } else { String::new() };
        let _ = writeln!(
            out,
            "{indent}{:<w$} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8}",
            name,
            human::si(r.rate),
            human::si(Some(r.count)),
            err,
            r.measure.format(r.q.p50),
            r.measure.format(r.q.p90),
            r.measure.format(r.q.p99),
            r.measure.format(r.q.max),
        );
    }
}

/// Gauges, caches and states on a few lines.
fn gauges_block(out: &mut String, m: &Model, limit: usize, indent: &str) {
    let states = m.states();
    let caches = m.caches();
    let gauges = m.plain_gauges("");
    if states.is_empty() && caches.is_empty() && gauges.is_empty() {
        return;
    }
    for s in &states {
        let _ = writeln!(out, "{indent}state {} = {}", s.name, s.state);
    }
    for c in &caches {
        let mut line = format!("{indent}cache {}: hit {}", c.key, human::percent(c.hit_ratio));
        if let Some(l) = c.lookups_per_second {
            let _ = write!(line, ", {} lookups/s", human::si(Some(l)));
        }
        if let Some(s) = c.size {
            let _ = write!(line, ", {} entries", human::si(Some(s)));
        }
        let _ = writeln!(out, "{line}");
    }
    for (k, v) in gauges.iter().take(limit) {
        let _ = writeln!(out, "{indent}{k} = {}", Measure::from_name(k.name()).format(Some(*v)));
    }
    if gauges.len() > limit {
        let _ = writeln!(out, "{indent}… {} more gauges", gauges.len() - limit);
    }
}

fn process_line(m: &Model) -> Option<String> {
    let r = m.resources();
    if r.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    if r.cpu.is_some() {
        parts.push(format!("cpu {}", human::percent(r.cpu)));
    }
    if r.resident_bytes.is_some() {
        parts.push(format!("rss {}", human::bytes(r.resident_bytes)));
    }
    if r.open_fds.is_some() {
        parts.push(format!("fds {}", human::si(r.open_fds)));
    }
    if r.threads.is_some() {
        parts.push(format!("threads {}", human::si(r.threads)));
    }
    Some(parts.join(", "))
}

/// The periodic table for `--no-tui`: the header, the `limit` slowest rows, the busiest
/// counters, gauges, process and alerts.
pub fn table(m: &Model, title: &str, limit: usize) -> String {
    let mut out = String::new();
    let mut head = format!("── {title}");
    if let Some(src) = m.source {
        let _ = write!(head, " · {}", src.as_str());
    }
    if let Some(w) = &m.window {
        let _ = write!(head, ", window {w}");
    }
    if let Some(seq) = m.seq {
        let _ = write!(head, ", tick {seq}");
    }
    let _ = writeln!(out, "{head} ──");
    let rows = m.latency_rows(Sort::P99, "");
    if !rows.is_empty() {
        latency_table(&mut out, &rows[..rows.len().min(limit)], "  ");
    }
    let rates: Vec<_> = m.rate_rows(Sort::P99, "").into_iter().filter(|r| r.rate.is_some_and(|r| r > 0.0)).collect();
    if !rates.is_empty() {
        let names: Vec<String> = rates.iter().take(limit).map(|r| r.key.fit(NAME_MAX)).collect();
        let w = name_width(names.iter());
        let _ = writeln!(out, "  {:<w$} {:>12} {:>10}", "counter", "per second", "total");
        for (r, n) in rates.iter().zip(&names) {
            let _ = writeln!(out, "  {:<w$} {:>12} {:>10}", n, r.measure.rate(r.rate), r.measure.format(Some(r.total)));
        }
    }
    gauges_block(&mut out, m, limit, "  ");
    if let Some(p) = process_line(m) {
        let _ = writeln!(out, "  process: {p}");
    }
    for a in m.alerts() {
        let _ = writeln!(out, "  alert {} is {}", a.name, a.state);
    }
    out
}

/// The warnings a model raises under `t`: slow or failing rows and firing alerts.
pub fn warnings(m: &Model, t: Thresholds) -> Vec<String> {
    let mut w = Vec::new();
    for r in m.latency_rows(Sort::Name, "") {
        if let Some(e) = r.error_rate.filter(|e| *e > t.error_rate) {
            w.push(format!(
                "{}: error rate {} > {} ({} of {} calls failed)",
                r.key,
                human::percent(Some(e)),
                human::percent(Some(t.error_rate)),
                human::si(r.errors),
                human::si(Some(r.count))
            ));
        }
        if r.measure == Measure::Seconds {
            if let Some(p) = r.q.p99.filter(|p| *p > t.p99) {
                w.push(format!("{}: p99 {} > {}", r.key, human::duration(Some(p)), human::duration(Some(t.p99))));
            }
        }
    }
    for a in m.alerts().into_iter().filter(|a| a.state == "firing") {
        w.push(format!("alert {} is firing", a.name));
    }
    for s in m.states().into_iter().filter(|s| s.state == "open") {
        w.push(format!("{} is open", s.name));
    }
    w
}

/// The `report` text for one scrape of `url`.
pub fn report(m: &Model, url: &str, limit: usize, t: Thresholds) -> String {
    let mut out = String::new();
    let _ = write!(out, "shardmetrics report — {url}");
    if let Some(src) = m.source {
        let _ = write!(out, " ({}", src.as_str());
        if let Some(seq) = m.seq {
            let _ = write!(out, ", tick {seq}");
        }
        let _ = write!(
            out,
            ", {} counters, {} gauges, {} latency series, {})",
            m.rates.len(),
            m.gauges.len(),
            m.latencies.len(),
            human::bytes(Some(m.bytes as f64))
        );
    }
    out.push('\n');
    let scope = if m.window.is_some() { "over the window" } else { "since the service started" };

    let _ = writeln!(out, "\nSlowest operations (by p99, {scope})");
    // Series that never saw a call say nothing about speed or traffic.
    let slow: Vec<&LatencyRow> = m.latency_rows(Sort::P99, "").into_iter().filter(|r| r.count > 0.0).collect();
    let idle = m.latencies.len() - slow.len();
    if slow.is_empty() {
        let _ = writeln!(out, "  none: the endpoint exports no operations, histograms or summaries with calls");
    } else {
        latency_table(&mut out, &slow[..slow.len().min(limit)], "  ");
    }
    if idle > 0 {
        let _ = writeln!(out, "  ({idle} series without calls not shown)");
    }

    let _ = writeln!(out, "\nMost called");
    let mut busy: Vec<&LatencyRow> = m.latency_rows(Sort::Calls, "").into_iter().filter(|r| r.count > 0.0).collect();
    busy.sort_by(|a, b| b.count.total_cmp(&a.count));
    if busy.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let names: Vec<String> = busy.iter().take(limit).map(|r| r.key.fit(NAME_MAX)).collect();
        let w = name_width(names.iter());
        let total: f64 = busy.iter().map(|r| r.count).sum();
        let _ = writeln!(out, "  {:<w$} {:>10} {:>7} {:>9}", "operation", "calls", "share", "calls/s");
        for (r, n) in busy.iter().zip(&names) {
            let share = (total > 0.0).then(|| r.count / total);
            let _ = writeln!(
                out,
                "  {:<w$} {:>10} {:>7} {:>9}",
                n,
                human::si(Some(r.count)),
                human::percent(share),
                human::si(r.rate)
            );
        }
    }

    let _ = writeln!(out, "\nError rates");
    let mut failing: Vec<&LatencyRow> =
        m.latency_rows(Sort::Errors, "").into_iter().filter(|r| r.errors.is_some_and(|e| e > 0.0)).collect();
    failing.truncate(limit);
    if failing.is_empty() {
        let with_errors = m.latencies.values().any(|r| r.errors.is_some());
        let _ = writeln!(out, "  {}", if with_errors { "no failed calls" } else { "no operations count errors" });
    } else {
        let names: Vec<String> = failing.iter().map(|r| r.key.fit(NAME_MAX)).collect();
        let w = name_width(names.iter());
        let _ = writeln!(out, "  {:<w$} {:>10} {:>10} {:>7}", "operation", "errors", "calls", "err%");
        for (r, n) in failing.iter().zip(&names) {
            let _ = writeln!(
                out,
                "  {:<w$} {:>10} {:>10} {:>7}",
                n,
                human::si(r.errors),
                human::si(Some(r.count)),
                human::percent(r.error_rate)
            );
        }
    }

    let _ = writeln!(out, "\nBusiest counters");
    let mut counters = m.rate_rows(Sort::P99, "");
    if counters.iter().all(|r| r.rate.is_none()) {
        counters.sort_by(|a, b| b.total.total_cmp(&a.total));
    }
    if counters.is_empty() {
        let _ = writeln!(out, "  none");
    } else {
        let names: Vec<String> = counters.iter().take(limit).map(|r| r.key.fit(NAME_MAX)).collect();
        let w = name_width(names.iter());
        let _ = writeln!(out, "  {:<w$} {:>12} {:>10}", "counter", "per second", "total");
        for (r, n) in counters.iter().zip(&names) {
            let _ = writeln!(out, "  {:<w$} {:>12} {:>10}", n, r.measure.rate(r.rate), r.measure.format(Some(r.total)));
        }
    }

    let mut gauges = String::new();
    gauges_block(&mut gauges, m, limit, "  ");
    if !gauges.is_empty() {
        let _ = writeln!(out, "\nGauges, caches and states\n{}", gauges.trim_end());
    }
    let _ = writeln!(out, "\nProcess\n  {}", process_line(m).unwrap_or_else(|| "no process_* series".into()));
    let alerts = m.alerts();
    let _ = writeln!(out, "\nAlerts");
    if alerts.is_empty() {
        let _ = writeln!(out, "  no alert states exported");
    }
    for a in alerts {
        let _ = writeln!(out, "  {:<9} {}", a.state, a.name);
    }

    let warnings = warnings(m, t);
    let _ = writeln!(out, "\nWarnings");
    if warnings.is_empty() {
        let _ = writeln!(
            out,
            "  none (every error rate ≤ {}, every p99 ≤ {}, no alert firing)",
            human::percent(Some(t.error_rate)),
            human::duration(Some(t.p99))
        );
    }
    for w in &warnings {
        let _ = writeln!(out, "  ! {w}");
    }
    out
}
