//! PNG charts (plotters, bitmap backend). Text goes through plotters' `ab_glyph` renderer with a
//! TTF read at run time ([`load_font`]), so nothing links against fontconfig or freetype.
//!
//! Two shapes: grouped bars (one group per column of the [`Grid`], one bar per row, a legend of
//! rows on the right) and log-log lines (x = the columns' numeric values, one line per row).

use std::{error::Error, fs, path::Path};

use plotters::{
    coord::{
        combinators::{LogCoord, WithKeyPoints},
        ranged1d::{AsRangedCoord, ValueFormatter},
        Shift,
    },
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use crate::{format::count, grid::Grid};

pub type Result<T> = std::result::Result<T, Box<dyn Error>>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 560;
const LEGEND_WIDTH: u32 = 250;
const FONT: &str = "sans-serif";

/// Reads a TrueType/OpenType font and registers it as plotters' `sans-serif`. The bytes are
/// leaked: plotters keeps `&'static` font data for the life of the process.
pub fn load_font(path: &Path) -> std::result::Result<(), String> {
    let bytes = fs::read(path).map_err(|e| format!("font {}: {e}", path.display()))?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FONT, FontStyle::Normal, bytes)
        .map_err(|_| format!("font {}: not a TrueType/OpenType font", path.display()))
}

/// Library colours, the same in every chart (tableau10).
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The palette slot of a library that has one, so it keeps its colour across charts.
fn known_colour(name: &str) -> Option<usize> {
    match name {
        "shardmetrics" => Some(3),
        "shardmetrics-snapshot+render" => Some(6),
        "prometheus" => Some(1),
        "prometheus-client" => Some(2),
        "metrics" | "metrics-exporter-prometheus" => Some(4),
        "fast-telemetry" => Some(0),
        "hdrhistogram-mutex" => Some(5),
        "hdrhistogram-per-thread" => Some(8),
        n if n.starts_with("floor") => Some(7),
        _ => None,
    }
}

/// Colours for a chart's series: known libraries their own, the others the palette slots no
/// known library in this chart uses, in order.
fn colours(names: &[String]) -> Vec<RGBColor> {
    let taken: Vec<usize> = names.iter().filter_map(|n| known_colour(n)).collect();
    let mut free = (0..PALETTE.len()).filter(|i| !taken.contains(i)).cycle();
    names
        .iter()
        .map(|n| PALETTE[known_colour(n).unwrap_or_else(|| free.next().expect("the palette has free slots"))])
        .collect()
}

/// Log scale when the figures span more than this ratio.
const LOG_ABOVE_RATIO: f64 = 30.0;

fn wants_log(grid: &Grid) -> bool {
    let (lo, hi) = bounds(grid);
    hi / lo > LOG_ABOVE_RATIO
}

/// The smallest positive and the largest figure (a log axis cannot show zero).
fn bounds(grid: &Grid) -> (f64, f64) {
    grid.values().filter(|v| *v > 0.0).fold((f64::INFINITY, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// A log axis from `lo` to `hi` with grid lines at 1..9 × 10^k and labels (bold lines) at 1, 2
/// and 5 × 10^k, or only at powers of ten when it spans more than five decades. Plotters' own
/// log key points repeat each power of ten, which draws its label twice.
fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let labelled: &[u32] = if last - first > 5 { &[1] } else { &[1, 2, 5] };
    let (mut bold, mut light) = (Vec::new(), Vec::new());
    for exp in first..=last {
        for m in 1..=9u32 {
            let v = f64::from(m) * 10f64.powi(exp);
            if v < lo * (1.0 - 1e-9) || v > hi * (1.0 + 1e-9) {
                continue;
            }
            if labelled.contains(&m) {
                bold.push(v);
            } else {
                light.push(v);
            }
        }
    }
    (lo..hi).log_scale().with_key_points(bold).with_light_points(light)
}

/// The largest 1, 2 or 5 × 10^k not above `v` (> 0): where log-scale bars start.
fn nice_floor(v: f64) -> f64 {
    let decade = 10f64.powf(v.log10().floor());
    [5.0, 2.0, 1.0].into_iter().map(|m| m * decade).find(|&f| f <= v).unwrap_or(decade)
}

/// A grouped bar chart.
pub struct Bars<'a> {
    pub title: &'a str,
    pub y_desc: &'a str,
    pub grid: &'a Grid,
    /// Text above each bar.
    pub label: &'a dyn Fn(f64) -> String,
    /// Text under each group, from the column's label (`2t` → `2 threads`).
    pub category: &'a dyn Fn(&str) -> String,
    /// `None` picks a log scale when the figures span more than 30×.
    pub log: Option<bool>,
    /// Draw the rows' legend on the right (off for single-row charts, whose columns say it all).
    pub legend: bool,
}

/// Draws `bars` into a new PNG.
pub fn bars_png(path: &Path, bars: &Bars) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    draw_bars(&root, bars)?;
    root.present()?;
    Ok(())
}

/// Two bar charts side by side in one PNG (the service chart: throughput and tail latency).
pub fn bars_pair_png(path: &Path, left: &Bars, right: &Bars) -> Result<()> {
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (l, r) = root.split_horizontally(WIDTH / 2);
    draw_bars(&l, left)?;
    draw_bars(&r, right)?;
    root.present()?;
    Ok(())
}

pub fn draw_bars(area: &Area, bars: &Bars) -> Result<()> {
    let grid = bars.grid;
    if grid.is_empty() {
        return Err("nothing to plot".into());
    }
    let (chart_area, legend_area) = if bars.legend {
        let (w, _) = area.dim_in_pixel();
        let (c, l) = area.split_horizontally(w - LEGEND_WIDTH);
        (c, Some(l))
    } else {
        (area.clone(), None)
    };
    let (lo, hi) = bounds(grid);
    if hi <= 0.0 {
        return Err("no positive figure to plot".into());
    }
    let has_zero = grid.values().any(|v| v <= 0.0);
    if bars.log.unwrap_or_else(|| wants_log(grid)) && !has_zero {
        // Room above the tallest bar for its label: 15% of the span in decades, at least 0.3.
        let floor = nice_floor(lo * 0.8);
        let decades = (hi / floor).log10();
        let top = hi * 10f64.powf((decades * 0.15).max(0.3));
        bar_chart(&chart_area, bars, log_axis(floor, top), floor, &format!("{} (log scale)", bars.y_desc), true)?;
    } else {
        bar_chart(&chart_area, bars, 0.0..hi * 1.15, 0.0, bars.y_desc, false)?;
    }
    if let Some(l) = legend_area {
        legend(&l, &grid.rows)?;
    }
    Ok(())
}

fn bar_chart<Y>(area: &Area, bars: &Bars, y: Y, base: f64, y_desc: &str, log: bool) -> Result<()>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let grid = bars.grid;
    let cols = grid.cols.len();
    let mut chart = ChartBuilder::on(area)
        .caption(bars.title, (FONT, 22))
        .margin(14)
        .x_label_area_size(40)
        .y_label_area_size(78)
        .build_cartesian_2d(0.0..cols as f64, y)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_max_light_lines(if log { 10 } else { 1 })
        .y_desc(y_desc)
        .y_label_formatter(&|v| count(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()?;

    // Category names centred under each group; the mesh's own x labels would land at round
    // numbers, not at the groups' centres.
    let (base_x, base_y) = area.get_base_pixel();
    let label_style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (c, col) in grid.cols.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(c as f64 + 0.5, base));
        area.draw(&Text::new((bars.category)(&col.label), (px - base_x, py - base_y + 8), label_style.clone()))?;
    }

    let rows = grid.rows.len();
    let slot = 0.8 / rows as f64;
    let value_style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    let row_colours = colours(&grid.rows);
    let col_colours = colours(&grid.cols.iter().map(|c| c.label.clone()).collect::<Vec<_>>());
    for (r, &row_colour) in row_colours.iter().enumerate() {
        for (c, &col_colour) in col_colours.iter().enumerate() {
            let Some(v) = grid.get(r, c) else { continue };
            // Without a legend (one row), each column is its own thing: colour it by its name.
            let fill = if bars.legend { row_colour } else { col_colour };
            let x0 = c as f64 + 0.1 + r as f64 * slot + slot * 0.06;
            let x1 = x0 + slot * 0.88;
            chart.draw_series(std::iter::once(Rectangle::new([(x0, base), (x1, v)], fill.filled())))?;
            let (px0, _) = chart.backend_coord(&(x0, v));
            let (px1, _) = chart.backend_coord(&(x1, v));
            let text = (bars.label)(v);
            // Only where it fits: under 7 px per character at 12 px.
            if px1 - px0 + 4 >= 13 * text.chars().count() as i32 / 2 {
                let mid = (x0 + x1) / 2.0;
                chart.draw_series(std::iter::once(
                    EmptyElement::at((mid, v)) + Text::new(text, (0, -3), value_style.clone()),
                ))?;
            }
        }
    }
    Ok(())
}

/// A coloured square and the name per row, top to bottom.
fn legend(area: &Area, rows: &[String]) -> Result<()> {
    let style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, colour)) in rows.iter().zip(colours(rows)).enumerate() {
        let y = 70 + 28 * i as i32;
        area.draw(&Rectangle::new([(8, y - 8), (24, y + 8)], colour.filled()))?;
        area.draw(&Text::new(name.clone(), (32, y), style.clone()))?;
    }
    Ok(())
}

/// A log-log line chart: x = the columns' numeric values, one line per row.
pub struct Lines<'a> {
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub grid: &'a Grid,
    /// Y axis labels (the figures are ns; `format::duration` suits times).
    pub y_label: &'a dyn Fn(f64) -> String,
}

pub fn lines_png(path: &Path, lines: &Lines) -> Result<()> {
    let grid = lines.grid;
    if grid.is_empty() {
        return Err("nothing to plot".into());
    }
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (chart_area, legend_area) = root.split_horizontally(WIDTH - LEGEND_WIDTH);
    let (lo, hi) = bounds(grid);
    let (x_lo, x_hi) =
        grid.cols.iter().filter(|c| c.x > 0.0).fold((f64::INFINITY, 0.0f64), |(a, b), c| (a.min(c.x), b.max(c.x)));
    if hi <= 0.0 || x_hi <= 0.0 {
        return Err("no positive figure to plot".into());
    }
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(lines.title, (FONT, 22))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(84)
        .build_cartesian_2d(log_axis(x_lo.max(1.0) / 1.5, x_hi * 1.5), log_axis(nice_floor(lo * 0.8), hi * 1.5))?;
    chart
        .configure_mesh()
        .x_desc(lines.x_desc)
        .y_desc(lines.y_desc)
        .x_label_formatter(&|v| count(*v))
        .y_label_formatter(&|v| (lines.y_label)(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .bold_line_style(RGBColor(215, 215, 215))
        .draw()?;
    for (r, c) in colours(&grid.rows).into_iter().enumerate() {
        // Log-log: a zero figure (or series count) has no place on the chart; the table keeps it.
        let points: Vec<(f64, f64)> = grid
            .cols
            .iter()
            .enumerate()
            .filter_map(|(i, col)| grid.get(r, i).map(|v| (col.x, v)))
            .filter(|&(x, v)| x > 0.0 && v > 0.0)
            .collect();
        chart.draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(3)))?;
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 5, c.filled())))?;
    }
    legend(&legend_area, &grid.rows)?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use plotters::coord::ranged1d::{BoldPoints, LightPoints};

    use super::*;

    /// The font the report uses; `SHARDMETRICS_REPORT_FONT` overrides it.
    fn font() -> std::path::PathBuf {
        std::env::var_os("SHARDMETRICS_REPORT_FONT").map_or_else(|| crate::DEFAULT_FONT.into(), Into::into)
    }

    /// Width and height from a PNG's IHDR chunk.
    fn png_size(path: &Path) -> (u32, u32) {
        let b = fs::read(path).unwrap();
        assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
        assert_eq!(&b[12..16], b"IHDR");
        let be = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[test]
    fn draws_bar_and_line_pngs() {
        load_font(&font()).expect("the report's font (apt-get install fonts-dejavu-core)");
        let tmp = tempfile::tempdir().unwrap();
        let grid = Grid::from_points([
            ("shardmetrics".into(), "1t".into(), 1.0, 1.2),
            ("shardmetrics".into(), "2t".into(), 2.0, 1.4),
            ("prometheus".into(), "1t".into(), 1.0, 3.0),
            ("prometheus".into(), "2t".into(), 2.0, 120.0),
        ]);
        let bars = tmp.path().join("bars.png");
        let label = |v: f64| crate::format::sig3(v);
        bars_png(
            &bars,
            &Bars {
                title: "t",
                y_desc: "ns",
                grid: &grid,
                label: &label,
                category: &|c| c.to_owned(),
                log: None,
                legend: true,
            },
        )
        .unwrap();
        assert_eq!(png_size(&bars), (WIDTH, HEIGHT));
        assert!(wants_log(&grid), "1.2..120 spans 100x");
        let names = ["floor", "arc-swap", "shardmetrics", "x"].map(String::from);
        assert_eq!(colours(&names), [PALETTE[7], PALETTE[0], PALETTE[3], PALETTE[1]]);

        let axis = log_axis(0.5, 30.0);
        assert_eq!(axis.key_points(BoldPoints(100)), [0.5, 1.0, 2.0, 5.0, 10.0, 20.0]);
        let light = axis.key_points(LightPoints::new(100, 100));
        let light: Vec<String> = light.iter().map(|v| format!("{v:.1}")).collect();
        assert_eq!(light, ["0.6", "0.7", "0.8", "0.9", "3.0", "4.0", "6.0", "7.0", "8.0", "9.0", "30.0"]);
        let wide = log_axis(1.0, 1e7);
        assert_eq!(wide.key_points(BoldPoints(100)).len(), 8, "powers of ten only");
        assert_eq!(nice_floor(0.588), 0.5);
        assert_eq!(nice_floor(1.6), 1.0);
        assert_eq!(nice_floor(45.0), 20.0);

        let lines_grid = Grid::from_points([
            ("shardmetrics".into(), "100".into(), 100.0, 30.0),
            ("shardmetrics".into(), "100000".into(), 100_000.0, 25.0),
        ]);
        let lines = tmp.path().join("lines.png");
        let y_label = |v: f64| crate::format::duration(v);
        lines_png(&lines, &Lines { title: "t", x_desc: "series", y_desc: "ns", grid: &lines_grid, y_label: &y_label })
            .unwrap();
        assert_eq!(png_size(&lines), (WIDTH, HEIGHT));

        // A zero figure cannot go on a log axis: the chart falls back to linear instead of failing.
        let with_zero = Grid::from_points([
            ("shardmetrics".into(), "counter".into(), 0.0, 0.0),
            ("prometheus".into(), "counter".into(), 0.0, 500.0),
        ]);
        let zero = tmp.path().join("zero.png");
        let bars = Bars {
            title: "t",
            y_desc: "B",
            grid: &with_zero,
            label: &label,
            category: &|c| c.to_owned(),
            log: Some(true),
            legend: true,
        };
        bars_png(&zero, &bars).unwrap();
        let zeros = Grid::from_points([("a".into(), "c".into(), 0.0, 0.0)]);
        let bars = Bars { grid: &zeros, ..bars };
        assert!(bars_png(&zero, &bars).is_err());

        let empty = tmp.path().join("empty.png");
        let none = Grid::default();
        let bars = Bars {
            title: "t",
            y_desc: "ns",
            grid: &none,
            label: &label,
            category: &|c| c.to_owned(),
            log: None,
            legend: true,
        };
        assert!(bars_png(&empty, &bars).is_err());
    }
}
