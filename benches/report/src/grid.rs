//! A table of figures: rows are the series of a plot (libraries, thread counts), columns its
//! categories or x values (thread counts, series counts, memory kinds). Tables and charts are
//! both drawn from it, so the PNG and the markdown always show the same numbers.

use std::collections::BTreeMap;

/// A column: its label in the table and on the axis, and its position on a numeric x axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Col {
    pub label: String,
    pub x: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grid {
    pub rows: Vec<String>,
    pub cols: Vec<Col>,
    cells: BTreeMap<(usize, usize), f64>,
}

impl Grid {
    /// Builds a grid from `(row, column label, column x, value)` points. Rows are ordered by
    /// [`row_order`], columns by x; a repeated (row, column) keeps the last value.
    pub fn from_points(points: impl IntoIterator<Item = (String, String, f64, f64)>) -> Grid {
        let points: Vec<_> = points.into_iter().collect();
        let mut rows: Vec<String> = points.iter().map(|p| p.0.clone()).collect();
        rows.sort_by_key(|r| row_order(r));
        rows.dedup();
        let mut cols: Vec<Col> = points.iter().map(|p| Col { label: p.1.clone(), x: p.2 }).collect();
        cols.sort_by(|a, b| a.x.total_cmp(&b.x).then_with(|| a.label.cmp(&b.label)));
        cols.dedup();
        let mut cells = BTreeMap::new();
        for (row, col, x, value) in points {
            let r = rows.iter().position(|r| *r == row).expect("row was collected above");
            let c = cols.iter().position(|c| c.label == col && c.x == x).expect("column was collected above");
            cells.insert((r, c), value);
        }
        Grid { rows, cols, cells }
    }

    pub fn get(&self, row: usize, col: usize) -> Option<f64> {
        self.cells.get(&(row, col)).copied()
    }

    /// The value at (row name, column label).
    #[cfg(test)]
    pub fn find(&self, row: &str, col: &str) -> Option<f64> {
        let r = self.rows.iter().position(|r| r == row)?;
        let c = self.cols.iter().position(|c| c.label == col)?;
        self.get(r, c)
    }

    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.cells.values().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }
}

/// Sort key for row names: shardmetrics first, the no-library floors last, other libraries
/// alphabetically between; names with a leading number (`1thr`, `8thr`) in numeric order.
pub fn row_order(name: &str) -> (u8, u64, String) {
    if let Some(n) = leading_number(name) {
        return (0, n, name.to_owned());
    }
    let rank = if name == "shardmetrics" {
        1
    } else if name.starts_with("shardmetrics") {
        2
    } else if name.starts_with("floor") {
        4
    } else {
        3
    };
    (rank, 0, name.to_owned())
}

/// `8` for `8thr`, `2t`, `100`; `None` if the name does not start with a digit.
pub fn leading_number(s: &str) -> Option<u64> {
    let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(r: &str, c: &str, x: f64, v: f64) -> (String, String, f64, f64) {
        (r.into(), c.into(), x, v)
    }

    #[test]
    fn orders_rows_and_columns() {
        let g = Grid::from_points([
            p("prometheus", "2t", 2.0, 30.0),
            p("floor", "1t", 1.0, 0.5),
            p("shardmetrics", "2t", 2.0, 3.0),
            p("metrics", "1t", 1.0, 9.0),
            p("shardmetrics", "1t", 1.0, 1.0),
        ]);
        assert_eq!(g.rows, ["shardmetrics", "metrics", "prometheus", "floor"]);
        assert_eq!(g.cols.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["1t", "2t"]);
        assert_eq!(g.find("shardmetrics", "2t"), Some(3.0));
        assert_eq!(g.find("metrics", "2t"), None);
        assert_eq!(g.get(3, 0), Some(0.5));
    }

    #[test]
    fn numeric_rows_sort_by_number() {
        let g = Grid::from_points([
            p("8thr", "100", 100.0, 1.0),
            p("1thr", "100", 100.0, 2.0),
            p("2thr", "100", 100.0, 3.0),
        ]);
        assert_eq!(g.rows, ["1thr", "2thr", "8thr"]);
    }
}
