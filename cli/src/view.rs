//! Draws an [`App`] with ratatui into any backend: crossterm for the real terminal, ratatui's
//! `TestBackend` in tests and for text captures ([`to_text`]).
//!
//! ```text
//!  header: target · format · window · tick · scrapes · up/down · paused
//! ┌ Latency: operations, histograms, summaries — calls/s calls err% p50 p90 p99 max trend ┐
//! └────────────────────────────────────────────────────────────────────────────────────────┘
//! ┌ Rates: counters per second, totals, trend ──────┐┌ p99 over time (log scale) ─────────┐
//! └─────────────────────────────────────────────────┘└────────────────────────────────────┘
//! ┌ Gauges · caches · states ───────────────────────┐┌ Process ───────────────────────────┐
//! │                                                 │└────────────────────────────────────┘
//! │                                                 │┌ Alerts ────────────────────────────┐
//! └─────────────────────────────────────────────────┘└────────────────────────────────────┘
//!  keys, filter, or why the endpoint is down
//! ```

use ratatui::{
    backend::TestBackend,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    symbols::Marker,
    text::{Line, Span},
    widgets::{Axis, Block, Cell, Chart, Dataset, GraphType, LegendPosition, Paragraph, Row, Table},
    Frame, Terminal,
};

use super::{
    app::{App, Status},
    human::{self, Measure},
    ingest::LatencyKind,
    model::{self, LatencyRow, Model, Sort},
};

/// Error ratio above which a row is shown as failing.
pub const ERROR_WARN: f64 = 0.05;
/// p99 above which a row is shown as slow (seconds).
pub const P99_WARN: f64 = 1.0;

const CHART_COLORS: [Color; 4] = [Color::Cyan, Color::Magenta, Color::Yellow, Color::Green];
const TREND_WIDTH: usize = model::TREND;

/// Draws the whole dashboard.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(f.area());
    f.render_widget(Paragraph::new(header_line(app)), header);
    f.render_widget(Paragraph::new(footer_line(app)), footer);

    let [latency, middle, bottom] =
        Layout::vertical([Constraint::Percentage(40), Constraint::Fill(1), Constraint::Length(7)]).areas(body);
    let [rates, chart] = Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(middle);
    let [gauges, side] = Layout::horizontal([Constraint::Fill(3), Constraint::Fill(2)]).areas(bottom);
    let [process, alerts] = Layout::vertical([Constraint::Length(3), Constraint::Fill(1)]).areas(side);

    let rows = app.model.latency_rows(app.sort, &app.filter);
    draw_latency(f, latency, app, &rows);
    draw_chart(f, chart, app, &rows);
    draw_rates(f, rates, app);
    draw_gauges(f, gauges, app);
    draw_process(f, process, app);
    draw_alerts(f, alerts, app);
}

/// Width left for a table's one `Fill`/`Min` column inside a bordered `area`.
fn rest_width(area: Rect, fixed: &[u16], spacing: u16) -> usize {
    let used: u16 = fixed.iter().sum::<u16>() + spacing * fixed.len() as u16 + 2;
    area.width.saturating_sub(used) as usize
}

/// Renders one frame of `app` at `width` × `height` and returns it as text, one line per row
/// (trailing blanks trimmed): for tests and README captures.
pub fn to_text(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("the test backend cannot fail");
    terminal.draw(|f| draw(f, app)).expect("the test backend cannot fail");
    let buf = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn block(title: String, app: &App) -> Block<'static> {
    let stale = matches!(app.status, Status::Down { .. }) && app.model.scrapes > 0;
    let title = if stale { format!(" {title} (stale) ") } else { format!(" {title} ") };
    let border = if stale { Color::DarkGray } else { Color::Blue };
    Block::bordered().title(title).border_style(Style::default().fg(border))
}

fn header_line(app: &App) -> Line<'static> {
    let m = &app.model;
    let mut spans = vec![
        Span::styled(
            " shardmetrics top ",
            Style::default().add_modifier(Modifier::BOLD).fg(Color::Black).bg(Color::Cyan),
        ),
        Span::raw(format!(" {} ", app.target)),
    ];
    if let Some(src) = m.source {
        let mut s = format!("│ {}", src.as_str());
        if let Some(w) = &m.window {
            s.push_str(&format!(", window {w}"));
        }
        if let Some(seq) = m.seq {
            s.push_str(&format!(", tick {seq}"));
        }
        s.push_str(&format!(" │ {} scrapes", m.scrapes));
        if m.bytes > 0 {
            s.push_str(&format!(", {}", human::bytes(Some(m.bytes as f64))));
        }
        s.push(' ');
        spans.push(Span::raw(s));
    }
    match &app.status {
        Status::Connecting => spans.push(Span::styled("│ connecting… ", Style::default().fg(Color::Yellow))),
        Status::Up { took } => spans.push(Span::styled(
            format!("│ up, scrape {} ", human::duration(Some(took.as_secs_f64()))),
            Style::default().fg(Color::Green),
        )),
        Status::Down { .. } => {
            spans.push(Span::styled("│ DOWN ", Style::default().fg(Color::White).bg(Color::Red)));
        }
    }
    if app.paused {
        spans.push(Span::styled(" PAUSED ", Style::default().fg(Color::Black).bg(Color::Yellow)));
    }
    Line::from(spans)
}

fn footer_line(app: &App) -> Line<'static> {
    if let Status::Down { error, attempts, retry_in } = &app.status {
        // Most important first: narrow terminals cut the end.
        return Line::from(vec![
            Span::styled(" endpoint down ", Style::default().fg(Color::White).bg(Color::Red)),
            Span::raw(format!(
                " retrying in {} (attempt {attempts}) · q quit · {error}",
                human::duration(Some(retry_in.as_secs_f64().round()))
            )),
        ]);
    }
    let key = |k: &'static str| Span::styled(k, Style::default().add_modifier(Modifier::BOLD).fg(Color::Cyan));
    let mut spans = vec![
        key(" q"),
        Span::raw(" quit  "),
        key("p"),
        Span::raw(if app.paused { " resume  " } else { " pause  " }),
        key("s"),
        Span::raw(format!(" sort: {}  ", app.sort.as_str())),
        key("/"),
        Span::raw(" filter"),
    ];
    if app.editing_filter {
        spans.push(Span::styled(format!(" {}█", app.filter), Style::default().fg(Color::Yellow)));
        spans.push(Span::raw("  (Enter keep, Esc clear)"));
    } else if !app.filter.is_empty() {
        spans.push(Span::styled(format!(": {}", app.filter), Style::default().fg(Color::Yellow)));
        spans.push(Span::raw("  (Esc clears)"));
    }
    Line::from(spans)
}

fn header_cell(label: &'static str, sorted: bool) -> Cell<'static> {
    let style = Style::default().add_modifier(Modifier::BOLD);
    if sorted {
        Cell::from(format!("{label}▼")).style(style.fg(Color::Yellow))
    } else {
        Cell::from(label).style(style)
    }
}

fn right(s: String) -> Cell<'static> {
    Cell::from(Line::from(s).right_aligned())
}

/// A latency table column: its header, width, and whether it is the sort column.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Col {
    Name,
    Rate,
    Calls,
    Errors,
    P50,
    P90,
    P99,
    Max,
    Trend,
}

impl Col {
    fn header(self) -> &'static str {
        match self {
            Col::Name => "operation / histogram",
            Col::Rate => "calls/s",
            Col::Calls => "calls",
            Col::Errors => "err%",
            Col::P50 => "p50",
            Col::P90 => "p90",
            Col::P99 => "p99",
            Col::Max => "max",
            Col::Trend => "p99 trend",
        }
    }

    fn width(self) -> Constraint {
        match self {
            Col::Name => Constraint::Min(16),
            Col::Rate => Constraint::Length(8),
            Col::Calls => Constraint::Length(7),
            Col::Errors => Constraint::Length(6),
            Col::Trend => Constraint::Length(TREND_WIDTH as u16),
            _ => Constraint::Length(8),
        }
    }

    fn sorted(self, s: Sort) -> bool {
        matches!(
            (self, s),
            (Col::Name, Sort::Name) | (Col::Rate, Sort::Calls) | (Col::Errors, Sort::Errors) | (Col::P99, Sort::P99)
        )
    }

    fn fixed_width(self) -> u16 {
        match self.width() {
            Constraint::Length(n) => n,
            _ => 0,
        }
    }

    fn cell(self, model: &Model, r: &LatencyRow, name_width: usize) -> Cell<'static> {
        match self {
            Col::Name => Cell::from(match r.kind {
                LatencyKind::Operation => r.key.fit(name_width),
                LatencyKind::Histogram => format!("{} (hist)", r.key.fit(name_width.saturating_sub(7))),
                LatencyKind::Summary => format!("{} (summary)", r.key.fit(name_width.saturating_sub(10))),
            }),
            Col::Rate => right(human::si(r.rate)),
            Col::Calls => right(human::si(Some(r.count))),
            Col::Errors => {
                let style = match r.error_rate {
                    Some(e) if e > ERROR_WARN => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    Some(e) if e > 0.0 => Style::default().fg(Color::Yellow),
                    _ => Style::default(),
                };
                let shown = r.errors.is_some() || r.error_rate.is_some();
                right(if shown { human::percent(r.error_rate) } else { String::new() }).style(style)
            }
            Col::P50 => right(r.measure.format(r.q.p50)),
            Col::P90 => right(r.measure.format(r.q.p90)),
            Col::P99 => {
                let slow = r.measure == Measure::Seconds && r.q.p99.is_some_and(|p| p > P99_WARN);
                right(r.measure.format(r.q.p99)).style(if slow {
                    Style::default().fg(Color::Red)
                } else {
                    Style::default()
                })
            }
            Col::Max => right(r.measure.format(r.q.max)),
            Col::Trend => Cell::from(human::sparkline(model.p99_history(r).map(|(_, v)| v), TREND_WIDTH))
                .style(Style::default().fg(Color::Cyan)),
        }
    }
}

fn draw_latency(f: &mut Frame<'_>, area: Rect, app: &App, rows: &[&LatencyRow]) {
    let s = app.sort;
    // Narrow terminals lose the trend, then p90 and max, before the names get unreadable.
    let cols: &[Col] = match area.width {
        0..=89 => &[Col::Name, Col::Rate, Col::Errors, Col::P50, Col::P99],
        90..=119 => &[Col::Name, Col::Rate, Col::Calls, Col::Errors, Col::P50, Col::P99, Col::Max],
        _ => &[Col::Name, Col::Rate, Col::Calls, Col::Errors, Col::P50, Col::P90, Col::P99, Col::Max, Col::Trend],
    };
    let header = Row::new(cols.iter().map(|c| header_cell(c.header(), c.sorted(s))));
    let fixed: Vec<u16> = cols.iter().skip(1).map(|c| c.fixed_width()).collect();
    let name_width = rest_width(area, &fixed, 1);
    // Only the rows that fit are built (a node_exporter scrape has thousands).
    let visible = area.height.saturating_sub(3) as usize;
    let body = rows.iter().take(visible).map(|r| Row::new(cols.iter().map(|c| c.cell(&app.model, r, name_width))));
    let title = format!("Latency — {} of {} series, by {}", rows.len(), app.model.latencies.len(), s.as_str());
    let table =
        Table::new(body, cols.iter().map(|c| c.width())).header(header).block(block(title, app)).column_spacing(1);
    f.render_widget(table, area);
    if rows.is_empty() {
        let msg = if app.model.scrapes == 0 {
            "waiting for the first scrape…"
        } else if app.filter.is_empty() {
            "no operations, histograms or summaries at this endpoint"
        } else {
            "nothing matches the filter"
        };
        f.render_widget(Paragraph::new(format!("  {msg}")), inner_below_header(area));
    }
}

/// The area under a bordered table's header row.
fn inner_below_header(area: Rect) -> Rect {
    Rect { x: area.x + 1, y: area.y + 2, width: area.width.saturating_sub(2), height: area.height.saturating_sub(3) }
}

fn draw_chart(f: &mut Frame<'_>, area: Rect, app: &App, rows: &[&LatencyRow]) {
    let now = app.model.last_at.unwrap_or(0.0);
    let shown: Vec<&LatencyRow> = rows
        .iter()
        .filter(|r| r.measure == Measure::Seconds && app.model.p99_history(r).any(|(_, v)| v.is_some()))
        .take(CHART_COLORS.len())
        .copied()
        .collect();
    // Log scale: latencies of 200 µs and 150 ms both stay readable on one chart.
    let series: Vec<Vec<(f64, f64)>> = shown
        .iter()
        .map(|r| {
            app.model.p99_history(r).filter_map(|(t, v)| Some((t - now, v.filter(|v| *v > 0.0)?.log10()))).collect()
        })
        .collect();
    let span =
        shown.iter().filter_map(|r| app.model.p99_history(r).next()).map(|(t, _)| now - t).fold(10.0f64, f64::max);
    let (lo, hi) =
        series.iter().flatten().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let (lo, hi) =
        if lo.is_finite() { (lo.floor() as i32, (hi.ceil() as i32).max(lo.floor() as i32 + 1)) } else { (-3, 0) };
    let datasets: Vec<Dataset<'_>> = shown
        .iter()
        .zip(&series)
        .enumerate()
        .map(|(i, (r, data))| {
            // The label values say which series it is more briefly than `name{labels}`.
            let mut name = if !r.key.has_labels() {
                r.key.name().to_owned()
            } else {
                r.key.labels().map(|(_, v)| v).collect::<Vec<_>>().join(" ")
            };
            if name.chars().count() > 28 {
                name = name.chars().take(27).collect::<String>() + "…";
            }
            Dataset::default()
                .name(name)
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(CHART_COLORS[i]))
                .data(data)
        })
        .collect();
    if shown.is_empty() {
        let msg = if app.model.scrapes == 0 { "  …" } else { "  no latency quantiles to chart" };
        f.render_widget(Paragraph::new(msg).block(block("p99 over time".into(), app)), area);
        return;
    }
    let chart = Chart::new(datasets)
        .block(block(format!("p99 over time (log) — top {} by {}", shown.len(), app.sort.as_str()), app))
        .x_axis(
            Axis::default()
                .bounds([-span, 0.0])
                .labels([format!("-{}", human::duration(Some(span.round())).replace(".00s", "s")), "now".to_owned()])
                .style(Style::default().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([f64::from(lo), f64::from(hi)])
                .labels(decade_labels(lo, hi, area.height.saturating_sub(3)))
                .style(Style::default().fg(Color::DarkGray)),
        )
        .legend_position(Some(LegendPosition::TopRight))
        .hidden_legend_constraints((Constraint::Percentage(90), Constraint::Percentage(60)));
    f.render_widget(chart, area);
}

/// One label per decade when there are rows enough for them, else the two ends.
fn decade_labels(lo: i32, hi: i32, rows: u16) -> Vec<String> {
    let label = |k: i32| human::duration(Some(10f64.powi(k)));
    if i32::from(rows) >= 2 * (hi - lo + 1) {
        (lo..=hi).map(label).collect()
    } else {
        vec![label(lo), label(hi)]
    }
}

fn draw_rates(f: &mut Frame<'_>, area: Rect, app: &App) {
    let rows = app.model.rate_rows(app.sort, &app.filter);
    // Narrow: the names need the room more than the trend does.
    let trend = if area.width >= 90 { TREND_WIDTH as u16 } else { 0 };
    let mut header = vec![
        header_cell("counter", app.sort == Sort::Name),
        header_cell("per second", app.sort != Sort::Name),
        header_cell("total", false),
    ];
    let mut widths = vec![Constraint::Fill(1), Constraint::Length(11), Constraint::Length(9)];
    let mut fixed = vec![11, 9];
    if trend > 0 {
        header.push(header_cell("trend", false));
        widths.push(Constraint::Length(trend));
        fixed.push(trend);
    }
    let name_width = rest_width(area, &fixed, 1);
    let body = rows.iter().take(area.height.saturating_sub(3) as usize).map(|r| {
        let mut cells = vec![
            Cell::from(r.key.fit(name_width)),
            right(r.measure.rate(r.rate)),
            right(r.measure.format(Some(r.total))),
        ];
        if trend > 0 {
            cells.push(
                Cell::from(human::sparkline(r.history.iter(), TREND_WIDTH)).style(Style::default().fg(Color::Green)),
            );
        }
        Row::new(cells)
    });
    let header = Row::new(header);
    let title = format!("Rates — {} of {} counters", rows.len(), app.model.rates.len());
    f.render_widget(Table::new(body, widths).header(header).block(block(title, app)), area);
}

fn draw_gauges(f: &mut Frame<'_>, area: Rect, app: &App) {
    let m = &app.model;
    let width = area.width.saturating_sub(2) as usize;
    let mut lines: Vec<Line<'static>> = Vec::new();
    let pair = |name: String, value: String, style: Style| {
        let pad = width.saturating_sub(value.chars().count() + 1).max(1);
        let name: String = if name.chars().count() > pad {
            name.chars().take(pad.saturating_sub(1)).collect::<String>() + "…"
        } else {
            name
        };
        Line::from(vec![Span::raw(format!("{name:<pad$} ")), Span::styled(value, style)])
    };
    for s in m.states() {
        if !s.name.to_lowercase().contains(&app.filter.to_lowercase()) {
            continue;
        }
        let style = match s.state.as_str() {
            "open" => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
            "half_open" => Style::default().fg(Color::Yellow),
            _ => Style::default().fg(Color::Green),
        };
        lines.push(pair(format!("state {}", s.name), s.state, style));
    }
    for c in m.caches().into_iter().filter(|c| c.key.matches(&app.filter)) {
        let mut v = format!("hit {}", human::percent(c.hit_ratio));
        if let Some(l) = c.lookups_per_second {
            v.push_str(&format!(" {}/s", human::si(Some(l))));
        }
        if let Some(size) = c.size {
            v.push_str(&format!(" size {}", human::si(Some(size))));
        }
        lines.push(pair(format!("cache {}", c.key), v, Style::default().fg(Color::Cyan)));
    }
    for (k, v) in m.plain_gauges(&app.filter).into_iter().take(area.height as usize) {
        lines.push(pair(k.to_string(), Measure::from_name(k.name()).format(Some(v)), Style::default()));
    }
    if lines.is_empty() {
        lines.push(Line::from(if m.scrapes == 0 { "  …" } else { "  no gauges" }));
    }
    f.render_widget(Paragraph::new(lines).block(block("Gauges · caches · states".into(), app)), area);
}

fn draw_process(f: &mut Frame<'_>, area: Rect, app: &App) {
    let r = app.model.resources();
    let text = if r.is_empty() {
        Line::from("  no process_* series at this endpoint")
    } else {
        let mut parts = Vec::new();
        if r.cpu.is_some() {
            parts.push(format!("cpu {}", human::percent(r.cpu)));
        }
        if r.resident_bytes.is_some() {
            parts.push(format!("rss {}", human::bytes(r.resident_bytes)));
        }
        if r.virtual_bytes.is_some() {
            parts.push(format!("vsz {}", human::bytes(r.virtual_bytes)));
        }
        match (r.open_fds, r.max_fds) {
            (Some(o), Some(m)) => parts.push(format!("fds {}/{}", human::si(Some(o)), human::si(Some(m)))),
            (Some(o), None) => parts.push(format!("fds {}", human::si(Some(o)))),
            _ => {}
        }
        if r.threads.is_some() {
            parts.push(format!("threads {}", human::si(r.threads)));
        }
        Line::from(format!("  {}", parts.join(" · ")))
    };
    f.render_widget(Paragraph::new(text).block(block("Process".into(), app)), area);
}

fn draw_alerts(f: &mut Frame<'_>, area: Rect, app: &App) {
    let alerts = app.model.alerts();
    let firing = alerts.iter().filter(|a| a.state == "firing").count();
    let lines: Vec<Line<'static>> = if alerts.is_empty() {
        vec![Line::from("  no alert states exported")]
    } else {
        alerts
            .into_iter()
            .map(|a| {
                let style = match a.state.as_str() {
                    "firing" => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    "pending" => Style::default().fg(Color::Yellow),
                    _ => Style::default().fg(Color::Green),
                };
                Line::from(vec![Span::styled(format!(" ● {:<9}", a.state), style), Span::raw(a.name)])
            })
            .collect()
    };
    f.render_widget(Paragraph::new(lines).block(block(format!("Alerts — {firing} firing"), app)), area);
}
