//! The rule expression grammar, parsed by hand (no eval of anything):
//!
//! One job over ~650 lines: the expression language (lexer, parser, formatting of its values)
//! and its tests.
//!
//! ```text
//! condition := query [ op threshold ]
//! query     := stat "(" metric ")" [ window ]  |  metric [ window ]        (bare metric = value)
//! metric    := name [ "{" label "=" string { "," label "=" string } [","] "}" ]
//! window    := "[" duration "]"                                       e.g. [10s] [1m] [500ms]
//! op        := ">" | ">=" | "<" | "<=" | "==" | "!="
//! threshold := number [ unit ]                          e.g. 50ms 2GiB 5% 0.05 1e6 -3
//! unit      := ns us µs ms s m h | B kB KB MB GB TB KiB MiB GiB TiB | %
//! ```
//!
//! Thresholds are converted to base units (seconds, bytes, ratio): `50ms` is 0.05, `5%` is
//! 0.05, `2GiB` is 2147483648. Statistics are compared in the same base units, the units the
//! Prometheus exposition uses.

use std::{fmt, time::Duration};

/// A statistic a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stat {
    /// A gauge's value or a counter's total (no window: gauges keep no history).
    Value,
    /// A counter's increase over the window (over the last tick without one).
    Increase,
    /// Per second: a counter's increase, or a histogram's / operation latency's count.
    Rate,
    /// A histogram's (or operation latency's) number of values.
    Count,
    Mean,
    Min,
    Max,
    P50,
    P75,
    P90,
    P95,
    P99,
    P999,
    /// An operation's `errors / calls`.
    ErrorRate,
    /// An operation's `1 - error_rate`.
    SuccessRate,
    /// An operation's calls per second.
    Throughput,
    /// A cache's `hits / (hits + misses)`.
    HitRate,
}

/// Every stat with its name in expressions.
pub const STATS: &[(&str, Stat)] = &[
    ("value", Stat::Value),
    ("increase", Stat::Increase),
    ("rate", Stat::Rate),
    ("count", Stat::Count),
    ("mean", Stat::Mean),
    ("min", Stat::Min),
    ("max", Stat::Max),
    ("p50", Stat::P50),
    ("p75", Stat::P75),
    ("p90", Stat::P90),
    ("p95", Stat::P95),
    ("p99", Stat::P99),
    ("p999", Stat::P999),
    ("error_rate", Stat::ErrorRate),
    ("success_rate", Stat::SuccessRate),
    ("throughput", Stat::Throughput),
    ("hit_rate", Stat::HitRate),
];

impl Stat {
    /// The stat's name in expressions.
    pub fn as_str(self) -> &'static str {
        STATS.iter().find(|(_, s)| *s == self).map_or("?", |(n, _)| n)
    }

    /// The quantile of a `pNN` stat.
    pub fn quantile(self) -> Option<f64> {
        Some(match self {
            Stat::P50 => 0.5,
            Stat::P75 => 0.75,
            Stat::P90 => 0.9,
            Stat::P95 => 0.95,
            Stat::P99 => 0.99,
            Stat::P999 => 0.999,
            _ => return None,
        })
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Gt,
    Ge,
    Lt,
    Le,
    Eq,
    Ne,
}

impl Op {
    /// Whether `value op threshold`.
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Eq => value == threshold,
            Op::Ne => value != threshold,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "==",
            Op::Ne => "!=",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a number measures, so `50ms` is not compared with a byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// No unit given (or the metric has none): compatible with everything.
    Plain,
    /// Seconds.
    Time,
    Bytes,
    /// 0..1 (`%` thresholds).
    Ratio,
}

impl Dim {
    /// Whether a threshold of dimension `self` may be compared with a statistic of `stat`.
    pub fn fits(self, stat: Dim) -> bool {
        self == Dim::Plain || stat == Dim::Plain || self == stat
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Plain => "a plain number",
            Dim::Time => "a duration",
            Dim::Bytes => "a byte size",
            Dim::Ratio => "a ratio",
        }
    }
}

/// A threshold in base units, with the text it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub value: f64,
    pub dim: Dim,
    pub text: String,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a rule reads from a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub stat: Stat,
    pub metric: String,
    /// Exact label set of the series (order irrelevant).
    pub labels: Vec<(String, String)>,
    pub window: Option<Duration>,
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}", self.stat, self.metric)?;
        if !self.labels.is_empty() {
            f.write_str("{")?;
            for (i, (k, v)) in self.labels.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{k}={v:?}")?;
            }
            f.write_str("}")?;
        }
        f.write_str(")")?;
        if let Some(w) = self.window {
            write!(f, "[{}]", crate::window::format_duration(w))?;
        }
        Ok(())
    }
}

/// A syntax error: what is wrong and where (byte offset into the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub input: String,
    pub pos: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let col = self.input[..self.pos.min(self.input.len())].chars().count() + 1;
        write!(f, "{} at column {col} of `{}`", self.message, self.input)
    }
}

impl std::error::Error for ParseError {}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn err<T>(&self, pos: usize, message: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError { input: self.s.to_owned(), pos, message: message.into() })
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn skip_ws(&mut self) {
        let t = self.rest().trim_start();
        self.pos = self.s.len() - t.len();
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, what: &str) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            let found = self.peek().map_or("the end".to_owned(), |c| format!("`{c}`"));
            self.err(self.pos, format!("expected `{c}` {what}, found {found}"))
        }
    }

    /// `[a-zA-Z_:][a-zA-Z0-9_:]*` (colons only if `colon`).
    fn ident(&mut self, colon: bool) -> Option<&'a str> {
        self.skip_ws();
        let start = self.pos;
        let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':');
        let mut chars = self.rest().char_indices();
        match chars.next() {
            Some((_, c)) if ok_first(c) => {}
            _ => return None,
        }
        let len = chars.find(|&(_, c)| !ok(c)).map_or(self.rest().len(), |(i, _)| i);
        self.pos += len;
        Some(&self.s[start..start + len])
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let start = self.pos;
        if !self.eat('"') {
            return self.err(start, "expected a double-quoted label value");
        }
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, '"')) => out.push('"'),
                    Some((_, '\\')) => out.push('\\'),
                    Some((_, 'n')) => out.push('\n'),
                    Some((j, other)) => return self.err(self.pos + j, format!("unknown escape `\\{other}`")),
                    None => break,
                },
                c => out.push(c),
            }
        }
        self.err(start, "unterminated label value (missing closing `\"`)")
    }

    fn metric(&mut self) -> Result<(String, Vec<(String, String)>), ParseError> {
        self.skip_ws();
        let at = self.pos;
        let Some(name) = self.ident(true) else {
            return self.err(at, "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)");
        };
        let mut labels = Vec::new();
        if self.eat('{') {
            loop {
                if self.eat('}') {
                    break;
                }
                self.skip_ws();
                let at = self.pos;
                let Some(k) = self.ident(false) else {
                    return self.err(at, "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)");
                };
                if labels.iter().any(|(l, _): &(String, String)| l == k) {
                    return self.err(at, format!("label `{k}` given twice"));
                }
                self.expect('=', "after the label name")?;
                let v = self.string()?;
                labels.push((k.to_owned(), v));
                if !self.eat(',') {
                    self.expect('}', "to close the labels")?;
                    break;
                }
            }
        }
        Ok((name.to_owned(), labels))
    }

    fn window(&mut self) -> Result<Option<Duration>, ParseError> {
        if !self.eat('[') {
            return Ok(None);
        }
        self.skip_ws();
        let at = self.pos;
        let Some(end) = self.rest().find(']') else {
            return self.err(at, "missing `]` after the window");
        };
        let text = &self.rest()[..end];
        let Some(d) = crate::window::parse_duration(text) else {
            return self.err(at, format!("bad window `{}`: expected a duration like 10s, 1m, 500ms, 1h", text.trim()));
        };
        self.pos += end + 1;
        Ok(Some(d))
    }

    fn op(&mut self) -> Option<Op> {
        self.skip_ws();
        let r = self.rest();
        let (op, len) = if r.starts_with(">=") {
            (Op::Ge, 2)
        } else if r.starts_with("<=") {
            (Op::Le, 2)
        } else if r.starts_with("==") {
            (Op::Eq, 2)
        } else if r.starts_with("!=") {
            (Op::Ne, 2)
        } else if r.starts_with('>') {
            (Op::Gt, 1)
        } else if r.starts_with('<') {
            (Op::Lt, 1)
        } else {
            return None;
        };
        self.pos += len;
        Some(op)
    }

    fn threshold(&mut self) -> Result<Threshold, ParseError> {
        self.skip_ws();
        let start = self.pos;
        let r = self.rest();
        let b = r.as_bytes();
        let mut i = 0;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let digits = |i: &mut usize| {
            let s = *i;
            while *i < b.len() && b[*i].is_ascii_digit() {
                *i += 1;
            }
            *i > s
        };
        let mut any = digits(&mut i);
        if i < b.len() && b[i] == b'.' {
            i += 1;
            any |= digits(&mut i);
        }
        if !any {
            return self.err(start, "expected a number (like 50ms, 2GiB, 5%, 0.05)");
        }
        if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
            let mut j = i + 1;
            if j < b.len() && (b[j] == b'-' || b[j] == b'+') {
                j += 1;
            }
            if digits(&mut j) {
                i = j;
            }
        }
        let n: f64 = match r[..i].parse() {
            Ok(n) => n,
            Err(_) => return self.err(start, format!("bad number `{}`", &r[..i])),
        };
        // Unit: letters, µ or %, optionally after spaces.
        let after = &r[i..];
        let unit_start = i + (after.len() - after.trim_start().len());
        let unit_len = r[unit_start..]
            .char_indices()
            .find(|&(_, c)| !(c.is_alphabetic() || c == '%'))
            .map_or(r.len() - unit_start, |(k, _)| k);
        let unit = &r[unit_start..unit_start + unit_len];
        let (factor, dim) = match unit {
            "" => (1.0, Dim::Plain),
            "ns" => (1e-9, Dim::Time),
            "us" | "µs" => (1e-6, Dim::Time),
            "ms" => (1e-3, Dim::Time),
            "s" => (1.0, Dim::Time),
            "m" => (60.0, Dim::Time),
            "h" => (3600.0, Dim::Time),
            "B" => (1.0, Dim::Bytes),
            "kB" | "KB" => (1e3, Dim::Bytes),
            "MB" => (1e6, Dim::Bytes),
            "GB" => (1e9, Dim::Bytes),
            "TB" => (1e12, Dim::Bytes),
            "KiB" => (1024.0, Dim::Bytes),
            "MiB" => (1024.0 * 1024.0, Dim::Bytes),
            "GiB" => (1024.0 * 1024.0 * 1024.0, Dim::Bytes),
            "TiB" => (1024.0 * 1024.0 * 1024.0 * 1024.0, Dim::Bytes),
            "%" => (0.01, Dim::Ratio),
            other => {
                return self.err(
                    self.pos + unit_start,
                    format!(
                        "unknown unit `{other}`: use ns, us, ms, s, m, h (time), B, kB, MB, GB, KiB, MiB, GiB \
                         (bytes) or % (ratio)"
                    ),
                )
            }
        };
        let value = n * factor;
        if !value.is_finite() {
            return self.err(start, format!("threshold `{}` is not a finite number", &r[..unit_start + unit_len]));
        }
        self.pos += unit_start + unit_len;
        Ok(Threshold { value, dim, text: r[..unit_start + unit_len].split_whitespace().collect() })
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.pos < self.s.len() {
            let rest = self.rest();
            return self.err(self.pos, format!("unexpected `{rest}`"));
        }
        Ok(())
    }
}

/// Parses `query [op threshold]`.
pub fn parse_condition(s: &str) -> Result<(Query, Option<(Op, Threshold)>), ParseError> {
    let mut p = Parser { s, pos: 0 };
    p.skip_ws();
    let at = p.pos;
    let Some(first) = p.ident(true) else {
        return p.err(at, "expected a stat like p99(…) or a metric name");
    };
    let (stat, metric, labels) = if p.eat('(') {
        let Some(&(_, stat)) = STATS.iter().find(|(n, _)| *n == first) else {
            let known: Vec<&str> = STATS.iter().map(|(n, _)| *n).collect();
            return p.err(at, format!("unknown stat `{first}`; known stats: {}", known.join(", ")));
        };
        let (metric, labels) = p.metric()?;
        p.expect(')', "to close the stat")?;
        (stat, metric, labels)
    } else {
        // A bare metric: rewind and read it with its labels.
        p.pos = at;
        let (metric, labels) = p.metric()?;
        (Stat::Value, metric, labels)
    };
    let window_at = p.pos;
    let window = p.window()?;
    if window.is_some() && stat == Stat::Value {
        return p.err(
            window_at,
            "value has no window (gauges keep no history): drop the window, or use increase()/rate() for a counter",
        );
    }
    let query = Query { stat, metric, labels, window };
    p.skip_ws();
    if p.pos == s.len() {
        return Ok((query, None));
    }
    let op_at = p.pos;
    let Some(op) = p.op() else {
        return p.err(op_at, "expected a comparison (>, >=, <, <=, ==, !=)");
    };
    let t = p.threshold()?;
    p.end()?;
    Ok((query, Some((op, t))))
}

/// Parses a level: `[op] threshold`, as in `> 200ms` or `200ms`.
pub fn parse_level(s: &str) -> Result<(Option<Op>, Threshold), ParseError> {
    let mut p = Parser { s, pos: 0 };
    let op = p.op();
    let t = p.threshold()?;
    p.end()?;
    Ok((op, t))
}

/// How long a condition must hold before its level fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hold {
    /// On this many consecutive evaluations (ticks); 0 and 1 both fire on the first.
    Ticks(u32),
    /// Continuously for this long: from the first breaching tick to a breaching tick at least
    /// this much later.
    Time(Duration),
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hold::Ticks(1) => f.write_str("1 tick"),
            Hold::Ticks(n) => write!(f, "{n} ticks"),
            Hold::Time(d) => f.write_str(&crate::window::format_duration(*d)),
        }
    }
}

/// Parses `N ticks` / `N tick` / a duration (`30s`, `5m`, `250ms`, `1h`).
pub fn parse_hold(s: &str) -> Option<Hold> {
    let t = s.trim();
    if let Some(n) = t.strip_suffix("ticks").or_else(|| t.strip_suffix("tick")) {
        return n.trim().parse().ok().map(Hold::Ticks);
    }
    crate::window::parse_duration(t).map(Hold::Time)
}

/// Formats a value in base units the way a threshold of `dim` is written.
pub fn format_value(v: f64, dim: Dim) -> String {
    fn trim(x: f64) -> String {
        let s = format!("{x:.3}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_owned()
    }
    if !v.is_finite() {
        return format!("{v}");
    }
    match dim {
        Dim::Time => {
            let a = v.abs();
            if a >= 3600.0 {
                format!("{}h", trim(v / 3600.0))
            } else if a >= 60.0 {
                format!("{}m", trim(v / 60.0))
            } else if a >= 1.0 || a == 0.0 {
                format!("{}s", trim(v))
            } else if a >= 1e-3 {
                format!("{}ms", trim(v * 1e3))
            } else if a >= 1e-6 {
                format!("{}us", trim(v * 1e6))
            } else {
                format!("{}ns", trim(v * 1e9))
            }
        }
        Dim::Bytes => {
            const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
            let mut x = v;
            let mut u = 0;
            while x.abs() >= 1024.0 && u < UNITS.len() - 1 {
                x /= 1024.0;
                u += 1;
            }
            format!("{}{}", trim(x), UNITS[u])
        }
        Dim::Ratio => format!("{}%", trim(v * 100.0)),
        Dim::Plain => trim(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions() {
        let (q, c) = parse_condition(r#"p99(db_query{route="/api", method="GET"})[1m] > 50ms"#).unwrap();
        assert_eq!(q.stat, Stat::P99);
        assert_eq!(q.metric, "db_query");
        assert_eq!(q.labels, vec![("route".into(), "/api".into()), ("method".into(), "GET".into())]);
        assert_eq!(q.window, Some(Duration::from_secs(60)));
        let (op, t) = c.unwrap();
        assert_eq!(op, Op::Gt);
        assert!((t.value - 0.05).abs() < 1e-12);
        assert_eq!(t.dim, Dim::Time);

        let (q, c) = parse_condition("process_resident_memory_bytes >= 2GiB").unwrap();
        assert_eq!((q.stat, q.metric.as_str(), q.window), (Stat::Value, "process_resident_memory_bytes", None));
        let (op, t) = c.unwrap();
        assert_eq!((op, t.value, t.dim), (Op::Ge, 2147483648.0, Dim::Bytes));

        let (q, c) = parse_condition("error_rate(api) > 5%").unwrap();
        assert_eq!(q.stat, Stat::ErrorRate);
        assert_eq!(c.unwrap().1.value, 0.05);

        let (_, c) = parse_condition("hit_rate(users)[5m]<=0.8").unwrap();
        assert_eq!(c.unwrap(), (Op::Le, Threshold { value: 0.8, dim: Dim::Plain, text: "0.8".into() }));
        let (_, c) = parse_condition("value(temp) < -1.5e1").unwrap();
        assert_eq!(c.unwrap().1.value, -15.0);
        let (q, c) = parse_condition("rate(http_requests_total)[10s]").unwrap();
        assert_eq!((q.stat, c), (Stat::Rate, None));
        let (_, c) = parse_condition(r#"value(x{a="q\"uote"}) != 2 MB"#).unwrap();
        assert_eq!(c.unwrap().1.value, 2e6);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = parse_condition("p98(db) > 1").unwrap_err();
        assert_eq!(e.pos, 0);
        assert!(e.message.contains("unknown stat `p98`") && e.message.contains("p99"), "{e}");
        let e = parse_condition("p99(db) > 50xs").unwrap_err();
        assert!(e.message.contains("unknown unit `xs`"), "{e}");
        assert_eq!(e.pos, 12, "{e}");
        assert!(e.to_string().contains("column 13"), "{e}");
        let e = parse_condition("p99(db)[1y] > 1").unwrap_err();
        assert!(e.message.contains("bad window `1y`"), "{e}");
        let e = parse_condition("p99(db) >").unwrap_err();
        assert!(e.message.contains("expected a number"), "{e}");
        let e = parse_condition("p99(db) ~ 3").unwrap_err();
        assert!(e.message.contains("expected a comparison"), "{e}");
        let e = parse_condition("gauge_x[1m] > 3").unwrap_err();
        assert!(e.message.contains("value has no window"), "{e}");
        let e = parse_condition(r#"p99(db{a="1",a="2"}) > 3"#).unwrap_err();
        assert!(e.message.contains("given twice"), "{e}");
        let e = parse_condition(r#"p99(db{a="1) > 3"#).unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
        let e = parse_condition("p99(db) > 3ms and more").unwrap_err();
        assert!(e.message.contains("unexpected `and more`"), "{e}");
        let e = parse_condition("p99(db > 3").unwrap_err();
        assert!(e.message.contains("expected `)`"), "{e}");
        assert!(parse_condition("").is_err());
        assert!(parse_level("> 1e999").is_err());
    }

    #[test]
    fn levels_holds_and_formatting() {
        assert_eq!(parse_level("> 200ms").unwrap().0, Some(Op::Gt));
        assert_eq!(parse_level("200ms").unwrap().0, None);
        assert_eq!(parse_hold("3 ticks"), Some(Hold::Ticks(3)));
        assert_eq!(parse_hold("1tick"), Some(Hold::Ticks(1)));
        assert_eq!(parse_hold("30s"), Some(Hold::Time(Duration::from_secs(30))));
        assert_eq!(parse_hold("3 tiks"), None);
        assert_eq!(format_value(0.0732, Dim::Time), "73.2ms");
        assert_eq!(format_value(2147483648.0, Dim::Bytes), "2GiB");
        assert_eq!(format_value(0.073, Dim::Ratio), "7.3%");
    }
}
