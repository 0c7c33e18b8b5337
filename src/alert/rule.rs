//! Alert rules: [`Rule`] (a statistic, its levels and timing), its [`Severity`] levels and
//! [`AlertState`], [`RuleError`], and the compiled form the engine evaluates.

use std::{fmt, sync::Arc, time::Duration};

use super::expr::{self, Dim, Hold, Op, Query, Threshold};

/// A rule's threshold level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A rule's current state; the `shardmetrics_alert_state` value is `as u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum AlertState {
    #[default]
    Ok = 0,
    Warning = 1,
    Critical = 2,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Ok => "ok",
            AlertState::Warning => "warning",
            AlertState::Critical => "critical",
        }
    }

    /// The gauge value: 0, 1 or 2.
    pub fn as_f64(self) -> f64 {
        f64::from(self as u8)
    }

    pub(super) fn level(self) -> Option<usize> {
        match self {
            AlertState::Ok => None,
            AlertState::Warning => Some(0),
            AlertState::Critical => Some(1),
        }
    }
}

impl From<Severity> for AlertState {
    fn from(s: Severity) -> Self {
        match s {
            Severity::Warning => AlertState::Warning,
            Severity::Critical => AlertState::Critical,
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a rule is invalid, and which of its parts is at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The rule's name.
    pub rule: String,
    /// The part at fault: `name`, `expr`, `warning`, `critical`, `target`, `for`, `cooldown`.
    pub field: &'static str,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alert rule {:?}, {}: {}", self.rule, self.field, self.message)
    }
}

impl std::error::Error for RuleError {}

/// One alert rule; see the module docs. Build with [`Rule::new`], then add levels and timing.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) name: Arc<str>,
    pub(super) expr: Arc<str>,
    pub(super) query: Query,
    pub(super) op: Option<Op>,
    pub(super) expr_level: Option<Threshold>,
    pub(super) severity: Severity,
    pub(super) warning: Option<(Option<Op>, Threshold)>,
    pub(super) critical: Option<(Option<Op>, Threshold)>,
    pub(super) target: Option<Threshold>,
    pub(super) hold: Hold,
    pub(super) cooldown: Duration,
    pub(super) description: Arc<str>,
}

impl Rule {
    /// A rule named `name` (the `rule` label of its metrics) over `expr`, e.g.
    /// `p99(db_query)[1m] > 50ms` (see [`expr`]). The expression's threshold is the warning
    /// level unless [`Rule::severity`] says otherwise; an expression without a comparison
    /// needs [`Rule::warning`] / [`Rule::critical`] written with one (`"> 50ms"`).
    pub fn new(name: &str, expr: &str) -> Result<Rule, RuleError> {
        let err = |field, message: String| RuleError { rule: name.to_owned(), field, message };
        if name.trim().is_empty() {
            return Err(err("name", "a rule needs a non-empty name".into()));
        }
        let (query, cond) = expr::parse_condition(expr).map_err(|e| err("expr", e.to_string()))?;
        let (op, expr_level) = match cond {
            Some((op, t)) => (Some(op), Some(t)),
            None => (None, None),
        };
        Ok(Rule {
            name: name.into(),
            expr: expr.trim().into(),
            query,
            op,
            expr_level,
            severity: Severity::Warning,
            warning: None,
            critical: None,
            target: None,
            hold: Hold::Ticks(1),
            cooldown: Duration::ZERO,
            description: "".into(),
        })
    }

    fn level(&self, field: &'static str, s: &str) -> Result<(Option<Op>, Threshold), RuleError> {
        expr::parse_level(s).map_err(|e| RuleError { rule: self.name.to_string(), field, message: e.to_string() })
    }

    /// Which level the expression's threshold sets (default [`Severity::Warning`]).
    pub fn severity(mut self, s: Severity) -> Self {
        self.severity = s;
        self
    }

    /// The warning threshold, `"50ms"` or `"> 50ms"` (the comparison must match the rule's).
    pub fn warning(mut self, level: &str) -> Result<Self, RuleError> {
        self.warning = Some(self.level("warning", level)?);
        Ok(self)
    }

    /// The critical threshold, `"200ms"` or `"> 200ms"`.
    pub fn critical(mut self, level: &str) -> Result<Self, RuleError> {
        self.critical = Some(self.level("critical", level)?);
        Ok(self)
    }

    /// The desired value, for people reading notifications (never compared).
    pub fn target(mut self, value: &str) -> Result<Self, RuleError> {
        let (op, t) = self.level("target", value)?;
        if op.is_some() {
            return Err(RuleError {
                rule: self.name.to_string(),
                field: "target",
                message: "a target is a value, not a comparison".into(),
            });
        }
        self.target = Some(t);
        Ok(self)
    }

    /// Fire only after the condition held on `n` consecutive ticks (0 and 1: the first).
    pub fn for_ticks(mut self, n: u32) -> Self {
        self.hold = Hold::Ticks(n);
        self
    }

    /// Fire only after the condition held continuously for `d`.
    pub fn for_duration(mut self, d: Duration) -> Self {
        self.hold = Hold::Time(d);
        self
    }

    /// See [`Rule::for_ticks`] and [`Rule::for_duration`].
    pub fn hold(mut self, h: Hold) -> Self {
        self.hold = h;
        self
    }

    /// Minimum time between two notifications raising the rule to the same level.
    pub fn cooldown(mut self, d: Duration) -> Self {
        self.cooldown = d;
        self
    }

    /// Free text carried in notifications.
    pub fn description(mut self, text: &str) -> Self {
        self.description = text.into();
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    pub fn query(&self) -> &Query {
        &self.query
    }

    pub fn get_hold(&self) -> Hold {
        self.hold
    }

    pub fn get_cooldown(&self) -> Duration {
        self.cooldown
    }

    /// Resolves and checks the levels: one comparison, at least one level, levels in order,
    /// units that agree.
    pub(super) fn compile(&self) -> Result<Compiled, RuleError> {
        let err = |field, message: String| RuleError { rule: self.name.to_string(), field, message };
        let mut op = self.op;
        for (field, l) in [("warning", &self.warning), ("critical", &self.critical)] {
            if let Some((Some(lop), _)) = l {
                match op {
                    Some(o) if o != *lop => {
                        return Err(err(
                            field,
                            format!("comparison `{lop}` differs from the rule's `{o}`; a rule has one comparison"),
                        ))
                    }
                    _ => op = Some(*lop),
                }
            }
        }
        let Some(op) = op else {
            return Err(err(
                "expr",
                format!("no comparison: write `{} > 50ms`, or give the levels as \"> 50ms\"", self.expr),
            ));
        };
        let mut warning = self.warning.as_ref().map(|(_, t)| t.clone());
        let mut critical = self.critical.as_ref().map(|(_, t)| t.clone());
        if let Some(t) = &self.expr_level {
            let (slot, field) = match self.severity {
                Severity::Warning => (&mut warning, "warning"),
                Severity::Critical => (&mut critical, "critical"),
            };
            if slot.is_some() {
                return Err(err(
                    field,
                    format!("the {field} threshold is given twice (in the expression and as `{field}`)"),
                ));
            }
            *slot = Some(t.clone());
        }
        if warning.is_none() && critical.is_none() {
            return Err(err("expr", "no threshold: give the expression one (`> 50ms`) or a warning/critical".into()));
        }
        let mut dim = Dim::Plain;
        for (field, t) in [("warning", &warning), ("critical", &critical), ("target", &self.target)] {
            if let Some(t) = t {
                if !t.dim.fits(dim) {
                    return Err(err(
                        field,
                        format!("threshold {t} is {}, the others are {}", t.dim.as_str(), dim.as_str()),
                    ));
                }
                if t.dim != Dim::Plain {
                    dim = t.dim;
                }
            }
        }
        if let (Some(w), Some(c)) = (&warning, &critical) {
            let bad = match op {
                Op::Gt | Op::Ge => c.value < w.value,
                Op::Lt | Op::Le => c.value > w.value,
                Op::Eq | Op::Ne => false,
            };
            if bad {
                let which = if matches!(op, Op::Gt | Op::Ge) { "below" } else { "above" };
                return Err(err(
                    "critical",
                    format!(
                        "critical threshold {c} is {which} the warning threshold {w}; with `{op}` critical must be \
                         the more extreme one"
                    ),
                ));
            }
        }
        Ok(Compiled { op, levels: [warning, critical], dim })
    }
}

#[derive(Debug, Clone)]
pub(super) struct Compiled {
    pub(super) op: Op,
    /// Warning, critical.
    pub(super) levels: [Option<Threshold>; 2],
    /// The thresholds' dimension (Plain if none has a unit).
    pub(super) dim: Dim,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_are_checked() {
        let e = Rule::new("r", "p99(x) > 50ms").unwrap().critical("10ms").unwrap().compile().unwrap_err();
        assert_eq!(e.field, "critical");
        assert!(e.message.contains("below the warning threshold"), "{e}");
        let e = Rule::new("r", "hit_rate(c) < 80%").unwrap().critical("90%").unwrap().compile().unwrap_err();
        assert!(e.message.contains("above the warning threshold"), "{e}");
        let e = Rule::new("r", "p99(x) > 50ms").unwrap().critical("1GiB").unwrap().compile().unwrap_err();
        assert!(e.message.contains("is a byte size"), "{e}");
        let e = Rule::new("r", "p99(x) > 50ms").unwrap().critical("< 1s").unwrap().compile().unwrap_err();
        assert!(e.message.contains("differs from the rule's"), "{e}");
        let e = Rule::new("r", "p99(x) > 50ms").unwrap().warning("1s").unwrap().compile().unwrap_err();
        assert!(e.message.contains("given twice"), "{e}");
        let e = Rule::new("r", "p99(x)").unwrap().compile().unwrap_err();
        assert!(e.message.contains("no comparison"), "{e}");
        let c = Rule::new("r", "p99(x)").unwrap().warning("> 1s").unwrap().critical("2s").unwrap().compile().unwrap();
        assert_eq!(c.op, Op::Gt);
        assert_eq!(c.levels.iter().map(|l| l.as_ref().map(|t| t.value)).collect::<Vec<_>>(), [Some(1.0), Some(2.0)]);
        let c = Rule::new("r", "p99(x) > 2s").unwrap().severity(Severity::Critical).compile().unwrap();
        assert_eq!(c.levels[0], None);
        assert_eq!(c.levels[1].as_ref().map(|t| t.value), Some(2.0));
        assert_eq!(Rule::new(" ", "p99(x) > 1").unwrap_err().field, "name");
    }
}
