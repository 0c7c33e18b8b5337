//! Alert rules over derived statistics, evaluated on every published snapshot.
//!
//! A rule watches one statistic — `p99(db_query)[1m]`, `error_rate(api)[5m]`,
//! `process_resident_memory_bytes` — against a warning and/or a critical threshold:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use shardmetrics::{alert::{Alerts, Rule}, Registry};
//! use std::time::Duration;
//!
//! let registry = Registry::builder().manual().build();
//! let db = registry.operation("db_query").build()?;
//! Alerts::new()
//!     .rule(Rule::new("db_slow", "p99(db_query)[1m] > 50ms")?   // warning above 50 ms …
//!         .critical("200ms")?                                     // … critical above 200 ms
//!         .for_ticks(3)                                           // on 3 consecutive ticks
//!         .cooldown(Duration::from_secs(300)))?                   // no re-notification for 5 min
//!     .rule(Rule::new("rss", "process_resident_memory_bytes > 2GiB")?)?
//!     .on_notify(|n| eprintln!("{n}"))                           // on a thread of its own
//!     .install(&registry)?;
//!
//! db.record(Duration::from_millis(80), true);
//! for _ in 0..3 { registry.flush(); }                              // fires on the 3rd tick
//! let snap = registry.flush();                                     // state visible one tick later
//! assert_eq!(snap.gauge("shardmetrics_alert_state", &[("rule", "db_slow")]), Some(1.0));
//! # Ok(()) }
//! ```
//!
//! # Semantics
//! * **Evaluation**: an [`crate::Observer`] evaluates every rule right after each publish, on the
//!   ticking thread. The statistic is compared in base units (seconds, bytes, ratio — the
//!   Prometheus exposition's units); see [`expr`] for the grammar and the stats.
//! * **Levels**: the expression's threshold is the warning level (or the critical one with
//!   [`Rule::severity`]); [`Rule::critical`] / [`Rule::warning`] add the other. With `>`/`>=`
//!   critical must not be below warning, with `<`/`<=` not above.
//! * **`for`** ([`Hold`]): a level fires once its condition held on N consecutive ticks
//!   ([`Rule::for_ticks`]), or continuously for a duration ([`Rule::for_duration`]) — not one
//!   tick earlier. The default fires on the first breaching tick.
//! * **State**: the highest level that fired; when a level's condition stops holding the state
//!   drops at once (critical → warning → ok). Missing data (no such series yet, an empty
//!   window, an operation without calls) counts as "not breaching".
//! * **Notifications** go through a bounded channel to a thread of their own (`sm-alerts`), so
//!   a slow callback never delays a tick; when the channel is full they are dropped and
//!   counted in `shardmetrics_alert_notifications_dropped_total`. Each change of the state is
//!   one [`Notification`]: fired, escalated, de-escalated, resolved.
//! * **Cooldown**: after a notification that raised a rule to a level, raising it to that level
//!   again is not notified within the cooldown (flapping gives one "fired" and one "resolved",
//!   then silence); if the rule is still raised when the cooldown ends, it is notified then.
//!   An escalation to a level not notified within the cooldown is notified at once.
//! * **Metrics**: `shardmetrics_alert_state{rule}` (0 ok, 1 warning, 2 critical) and
//!   `shardmetrics_alert_value{rule}` (the statistic in base units, NaN without data), set by
//!   the observer after a publish and so visible from the next snapshot on, in every export.
//! * **Invalid rules**: a rule that does not fit the metrics it reads (p99 of a gauge, `50ms`
//!   against a byte count, a window longer than the registry keeps) never fires; it sends one
//!   [`NotificationKind::Invalid`] with the reason (again if the reason changes).

#![forbid(unsafe_code)]

mod config;
pub mod expr;

use std::{
    fmt,
    sync::{
        mpsc::{sync_channel, SyncSender, TrySendError},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

pub use config::ConfigError;
pub use expr::{Dim, Hold, Op, ParseError, Query, Stat, Threshold};

use crate::self_metrics;
use crate::{
    snapshot::{HistogramSnapshot, Value},
    Counter, Error, Family, Gauge, Registry, Snapshot, Unit,
};

/// Default capacity of the notification queue.
pub const DEFAULT_QUEUE: usize = 1024;
/// Name of the notifier thread.
pub const THREAD_NAME: &str = "sm-alerts";

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

    fn level(self) -> Option<usize> {
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
    name: Arc<str>,
    expr: Arc<str>,
    query: Query,
    op: Option<Op>,
    expr_level: Option<Threshold>,
    severity: Severity,
    warning: Option<(Option<Op>, Threshold)>,
    critical: Option<(Option<Op>, Threshold)>,
    target: Option<Threshold>,
    hold: Hold,
    cooldown: Duration,
    description: Arc<str>,
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
    fn compile(&self) -> Result<Compiled, RuleError> {
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
struct Compiled {
    op: Op,
    /// Warning, critical.
    levels: [Option<Threshold>; 2],
    /// The thresholds' dimension (Plain if none has a unit).
    dim: Dim,
}

/// What happened to a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotificationKind {
    /// Ok → warning or critical.
    Fired,
    /// Warning → critical.
    Escalated,
    /// Critical → warning.
    Deescalated,
    /// Warning or critical → ok.
    Resolved,
    /// The rule cannot be evaluated against the metrics it reads (the reason).
    Invalid(String),
}

impl NotificationKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NotificationKind::Fired => "fired",
            NotificationKind::Escalated => "escalated",
            NotificationKind::Deescalated => "deescalated",
            NotificationKind::Resolved => "resolved",
            NotificationKind::Invalid(_) => "invalid",
        }
    }
}

/// One change of a rule's state, handed to the callbacks.
#[derive(Debug, Clone)]
pub struct Notification {
    pub rule: Arc<str>,
    pub kind: NotificationKind,
    /// The state after the change.
    pub state: AlertState,
    /// The state last notified before it.
    pub previous: AlertState,
    /// The statistic in base units; `None` without data.
    pub value: Option<f64>,
    /// The threshold of `state` (of `previous` for a resolution), base units.
    pub threshold: Option<f64>,
    /// The rule's target, if it has one, base units.
    pub target: Option<f64>,
    /// How to format `value` and `threshold` ([`expr::format_value`]).
    pub dim: Dim,
    pub expr: Arc<str>,
    pub description: Arc<str>,
    /// Sequence number of the snapshot that caused it.
    pub seq: u64,
    pub at: SystemTime,
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.kind {
            NotificationKind::Resolved => "RESOLVED",
            NotificationKind::Invalid(_) => "INVALID",
            _ if self.state == AlertState::Critical => "CRITICAL",
            _ => "WARNING",
        };
        write!(f, "[{tag}] {} ", self.rule)?;
        match &self.kind {
            NotificationKind::Fired => f.write_str("fired")?,
            NotificationKind::Escalated | NotificationKind::Deescalated => {
                write!(f, "{} from {}", self.kind.as_str(), self.previous)?
            }
            NotificationKind::Resolved => write!(f, "resolved (was {})", self.previous)?,
            NotificationKind::Invalid(why) => return write!(f, "cannot be evaluated: {why} (`{}`)", self.expr),
        }
        write!(f, ": {}", self.expr)?;
        let mut parts = Vec::new();
        if let Some(v) = self.value {
            parts.push(format!("value {}", expr::format_value(v, self.dim)));
        }
        if let Some(t) = self.threshold {
            parts.push(format!("threshold {}", expr::format_value(t, self.dim)));
        }
        if let Some(t) = self.target {
            parts.push(format!("target {}", expr::format_value(t, self.dim)));
        }
        if !parts.is_empty() {
            write!(f, " ({})", parts.join(", "))?;
        }
        if !self.description.is_empty() {
            write!(f, " — {}", self.description)?;
        }
        Ok(())
    }
}

type Callback = Box<dyn FnMut(&Notification) + Send>;

/// Starts the notifier thread: it calls `callbacks` with every notification sent on the returned
/// queue of capacity `queue`.
fn spawn_notifier(queue: usize, mut callbacks: Vec<Callback>) -> SyncSender<Notification> {
    let (tx, rx) = sync_channel::<Notification>(queue);
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            // Ends when the observer (the only sender) is dropped with its registry.
            for n in rx {
                for f in &mut callbacks {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&n)));
                }
            }
        })
        .expect("failed to spawn the shardmetrics alert notifier thread");
    tx
}

/// A set of rules and the callbacks their notifications go to; [`Alerts::install`] puts them
/// on a registry.
#[must_use = "rules do nothing until `install()`"]
pub struct Alerts {
    rules: Vec<(Rule, Compiled)>,
    callbacks: Vec<Callback>,
    queue: usize,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts")
            .field("rules", &self.rules.iter().map(|(r, _)| r.name()).collect::<Vec<_>>())
            .field("callbacks", &self.callbacks.len())
            .finish_non_exhaustive()
    }
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts::new()
    }
}

impl Alerts {
    pub fn new() -> Alerts {
        Alerts { rules: Vec::new(), callbacks: Vec::new(), queue: DEFAULT_QUEUE }
    }

    /// Adds a rule after checking it (levels, units, a unique name).
    pub fn rule(mut self, rule: Rule) -> Result<Alerts, RuleError> {
        self.add(rule)?;
        Ok(self)
    }

    /// [`Alerts::rule`] by reference.
    pub fn add(&mut self, rule: Rule) -> Result<(), RuleError> {
        if self.rules.iter().any(|(r, _)| r.name == rule.name) {
            return Err(RuleError {
                rule: rule.name.to_string(),
                field: "name",
                message: "another rule has this name; rule names must be unique".into(),
            });
        }
        let c = rule.compile()?;
        self.rules.push((rule, c));
        Ok(())
    }

    /// The rules, in the order added.
    pub fn rules(&self) -> impl ExactSizeIterator<Item = &Rule> {
        self.rules.iter().map(|(r, _)| r)
    }

    /// Calls `f` with every notification, on the notifier thread (in order, one at a time). A
    /// panic in `f` is caught; the next notification is still delivered.
    pub fn on_notify(mut self, f: impl FnMut(&Notification) + Send + 'static) -> Alerts {
        self.callbacks.push(Box::new(f));
        self
    }

    /// Capacity of the queue to the notifier thread (default 1024); past it, notifications
    /// are dropped and counted rather than delaying a tick.
    pub fn queue_capacity(mut self, n: usize) -> Alerts {
        self.queue = n.max(1);
        self
    }

    /// Registers the alert metrics, starts the notifier thread (if there are callbacks) and
    /// adds the evaluating observer to `registry`.
    pub fn install(self, registry: &Registry) -> Result<(), Error> {
        let engine = self.engine(registry)?;
        registry.add_observer(engine);
        Ok(())
    }

    fn engine(self, registry: &Registry) -> Result<Engine, Error> {
        let state = registry
            .gauge(self_metrics::ALERT_STATE)
            .help("Alert rule state: 0 ok, 1 warning, 2 critical")
            .family(&["rule"])?;
        let value = registry
            .gauge(self_metrics::ALERT_VALUE)
            .help("Last evaluated statistic of an alert rule, in base units (NaN without data)")
            .family(&["rule"])?;
        let sent = registry
            .counter(self_metrics::ALERT_NOTIFICATIONS)
            .help("Alert notifications queued")
            .family(&["rule", "kind"])?;
        let dropped = registry
            .counter(self_metrics::ALERT_NOTIFICATIONS_DROPPED)
            .help("Alert notifications dropped: the notifier queue was full")
            .build()?;
        let mut live = Vec::with_capacity(self.rules.len());
        for (rule, c) in self.rules {
            let state_g = state.get(&[&rule.name])?;
            let value_g = value.get(&[&rule.name])?;
            state_g.set(0.0);
            value_g.set(f64::NAN);
            live.push(Live::new(rule, c, state_g, value_g));
        }
        let tx = if self.callbacks.is_empty() { None } else { Some(spawn_notifier(self.queue, self.callbacks)) };
        Ok(Engine { rules: live, tx, sent, dropped })
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Pending {
    since: Option<Instant>,
    ticks: u32,
}

/// A rule being evaluated.
struct Live {
    rule: Rule,
    c: Compiled,
    state_g: Gauge,
    value_g: Gauge,
    /// Warning, critical.
    pending: [Pending; 2],
    state: AlertState,
    notified: AlertState,
    /// When a notification last raised the rule to warning / critical.
    raised_at: [Option<Instant>; 2],
    invalid: Option<String>,
    /// Dimension of the statistic last read (for formatting when the thresholds are plain).
    stat_dim: Dim,
}

impl Live {
    fn new(rule: Rule, c: Compiled, state_g: Gauge, value_g: Gauge) -> Live {
        Live {
            rule,
            c,
            state_g,
            value_g,
            pending: [Pending::default(); 2],
            state: AlertState::Ok,
            notified: AlertState::Ok,
            raised_at: [None; 2],
            invalid: None,
            stat_dim: Dim::Plain,
        }
    }
}

/// The observer: evaluates every rule on every snapshot.
struct Engine {
    rules: Vec<Live>,
    tx: Option<SyncSender<Notification>>,
    sent: Family<Counter>,
    dropped: Counter,
}

impl crate::Observer for Engine {
    fn observe(&mut self, snapshot: &Arc<Snapshot>) {
        self.step(snapshot, Instant::now());
    }
}

impl Engine {
    fn step(&mut self, snap: &Snapshot, now: Instant) {
        for i in 0..self.rules.len() {
            let live = &mut self.rules[i];
            let (value, invalid) = match sample(&live.rule.query, snap) {
                Ok(Some((_, dim))) if !live.c.dim.fits(dim) => (
                    None,
                    Some(format!(
                        "the thresholds are {} but {} is {}",
                        live.c.dim.as_str(),
                        live.rule.query,
                        dim.as_str()
                    )),
                ),
                Ok(v) => {
                    if let Some((_, dim)) = v {
                        live.stat_dim = dim;
                    }
                    (v.map(|(v, _)| v).filter(|v| !v.is_nan()), None)
                }
                Err(why) => (None, Some(why)),
            };
            if invalid != live.invalid {
                live.invalid = invalid.clone();
                if let Some(why) = invalid {
                    let (prev, state) = (live.notified, live.state);
                    self.send(i, NotificationKind::Invalid(why), prev, state, None, snap);
                }
            }
            let live = &mut self.rules[i];
            live.value_g.set(value.unwrap_or(f64::NAN));
            let mut held = [false; 2];
            for (k, level) in live.c.levels.iter().enumerate() {
                let breach = matches!((value, level), (Some(v), Some(t)) if live.c.op.holds(v, t.value));
                let p = &mut live.pending[k];
                if !breach {
                    *p = Pending::default();
                    continue;
                }
                let since = *p.since.get_or_insert(now);
                p.ticks = p.ticks.saturating_add(1);
                held[k] = match live.rule.hold {
                    Hold::Ticks(n) => p.ticks >= n.max(1),
                    Hold::Time(d) => now.saturating_duration_since(since) >= d,
                };
            }
            let state = if held[1] {
                AlertState::Critical
            } else if held[0] {
                AlertState::Warning
            } else {
                AlertState::Ok
            };
            live.state = state;
            live.state_g.set(state.as_f64());
            let notified = live.notified;
            if state > notified {
                let k = state.level().unwrap_or(0);
                let cooling = live.raised_at[k].is_some_and(|t| now.saturating_duration_since(t) < live.rule.cooldown);
                if !cooling {
                    live.raised_at[k] = Some(now);
                    live.notified = state;
                    let kind =
                        if notified == AlertState::Ok { NotificationKind::Fired } else { NotificationKind::Escalated };
                    self.send(i, kind, notified, state, value, snap);
                }
            } else if state < notified {
                live.notified = state;
                let kind =
                    if state == AlertState::Ok { NotificationKind::Resolved } else { NotificationKind::Deescalated };
                self.send(i, kind, notified, state, value, snap);
            }
        }
    }

    fn send(
        &mut self,
        i: usize,
        kind: NotificationKind,
        previous: AlertState,
        state: AlertState,
        value: Option<f64>,
        snap: &Snapshot,
    ) {
        let Some(tx) = &self.tx else { return };
        let live = &self.rules[i];
        let level_of = |s: AlertState| s.level().and_then(|k| live.c.levels[k].as_ref()).map(|t| t.value);
        let threshold = match kind {
            NotificationKind::Resolved => level_of(previous),
            NotificationKind::Invalid(_) => None,
            _ => level_of(state),
        };
        let n = Notification {
            rule: live.rule.name.clone(),
            state,
            previous,
            value,
            threshold,
            target: live.rule.target.as_ref().map(|t| t.value),
            dim: if live.c.dim == Dim::Plain { live.stat_dim } else { live.c.dim },
            expr: live.rule.expr.clone(),
            description: live.rule.description.clone(),
            seq: snap.seq(),
            at: snap.taken_at(),
            kind,
        };
        let kind = n.kind.as_str();
        match tx.try_send(n) {
            Ok(()) => self.sent.with(&[&live.rule.name, kind]).inc(),
            Err(TrySendError::Full(_)) => self.dropped.inc(),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

fn unit_dim(u: Unit) -> Dim {
    match u.base_name() {
        Some("seconds") => Dim::Time,
        Some("bytes") => Dim::Bytes,
        Some("ratio") => Dim::Ratio,
        _ => Dim::Plain,
    }
}

fn kind_name(v: &Value) -> &'static str {
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
fn sample(q: &Query, snap: &Snapshot) -> Result<Option<(f64, Dim)>, String> {
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
    let mismatch = |what: &str, v: &Value| format!("{}() needs {what}, and `{}` is {}", q.stat, q.metric, kind_name(v));
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

fn hit_rate_missing(q: &Query, series: Option<&crate::Series>) -> Result<Option<(f64, Dim)>, String> {
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
    series: Option<&crate::Series>,
    labels: &[(&str, &str)],
    win: Option<&crate::Window<'_>>,
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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    fn engine(rule: Rule) -> (Registry, Gauge, Engine, mpsc::Receiver<Notification>) {
        let registry = Registry::builder().manual().build();
        let g = registry.gauge("latency").unit(Unit::Seconds).build().unwrap();
        let (tx, rx) = mpsc::channel();
        let e = Alerts::new()
            .rule(rule)
            .unwrap()
            .on_notify(move |n| tx.send(n.clone()).unwrap())
            .engine(&registry)
            .unwrap();
        (registry, g, e, rx)
    }

    fn kinds(rx: &mpsc::Receiver<Notification>, n: usize) -> Vec<(String, AlertState)> {
        (0..n)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).expect("notification"))
            .map(|n| (n.kind.as_str().to_owned(), n.state))
            .collect()
    }

    #[test]
    fn for_duration_fires_on_the_first_tick_at_least_that_long_after_the_first_breach() {
        let rule = Rule::new("slow", "value(latency) > 50ms").unwrap().for_duration(Duration::from_secs(30));
        let (registry, g, mut e, rx) = engine(rule);
        let t0 = Instant::now();
        g.set(0.08);
        let snap = registry.flush();
        for (secs, want) in [(0, AlertState::Ok), (10, AlertState::Ok), (29, AlertState::Ok), (30, AlertState::Warning)]
        {
            e.step(&snap, t0 + Duration::from_secs(secs));
            assert_eq!(e.rules[0].state, want, "at {secs}s");
        }
        // A tick without the breach restarts the clock.
        g.set(0.01);
        let clear = registry.flush();
        e.step(&clear, t0 + Duration::from_secs(31));
        assert_eq!(e.rules[0].state, AlertState::Ok);
        e.step(&snap, t0 + Duration::from_secs(40));
        e.step(&snap, t0 + Duration::from_secs(69));
        assert_eq!(e.rules[0].state, AlertState::Ok);
        e.step(&snap, t0 + Duration::from_secs(70));
        assert_eq!(e.rules[0].state, AlertState::Warning);
        assert_eq!(
            kinds(&rx, 3),
            vec![
                ("fired".into(), AlertState::Warning),
                ("resolved".into(), AlertState::Ok),
                ("fired".into(), AlertState::Warning)
            ]
        );
    }

    #[test]
    fn cooldown_is_measured_from_the_last_raise() {
        let rule = Rule::new("slow", "value(latency) > 50ms").unwrap().cooldown(Duration::from_secs(60));
        let (registry, g, mut e, rx) = engine(rule);
        let t0 = Instant::now();
        g.set(0.08);
        let hot = registry.flush();
        g.set(0.0);
        let cold = registry.flush();
        let at = |s| t0 + Duration::from_secs(s);
        e.step(&hot, at(0)); // fired
        e.step(&cold, at(1)); // resolved
        e.step(&hot, at(2)); // suppressed
        assert_eq!(e.rules[0].state, AlertState::Warning);
        e.step(&cold, at(3)); // nothing: the receiver never heard of the raise
        e.step(&hot, at(30)); // suppressed
        e.step(&hot, at(59)); // suppressed
        e.step(&hot, at(60)); // cooldown over, still firing: notified
        e.step(&cold, at(61)); // resolved
        assert_eq!(
            kinds(&rx, 4),
            vec![
                ("fired".into(), AlertState::Warning),
                ("resolved".into(), AlertState::Ok),
                ("fired".into(), AlertState::Warning),
                ("resolved".into(), AlertState::Ok)
            ]
        );
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

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

    /// Evaluation cost per rule and tick (printed, not asserted).
    #[test]
    fn evaluation_cost() {
        let registry = Registry::builder().manual().build();
        let mut alerts = Alerts::new();
        let kinds = [
            "p99(op{i=\"N\"})[1m] > 50ms",
            "error_rate(op{i=\"N\"})[10s] > 5%",
            "p99(op{i=\"N\"}) > 50ms",
            "g{i=\"N\"} > 5",
        ];
        for i in 0..25 {
            let op = registry.operation("op").label("i", &i.to_string()).build().unwrap();
            let g = registry.gauge("g").label("i", &i.to_string()).build().unwrap();
            g.set(1.0);
            for t in 0..1000u64 {
                op.record(Duration::from_micros(100 + t * 37 % 5000), t % 50 != 0);
            }
            for (k, kind) in kinds.iter().enumerate() {
                alerts.add(Rule::new(&format!("r{i}_{k}"), &kind.replace('N', &i.to_string())).unwrap()).unwrap();
            }
        }
        let mut e = alerts.engine(&registry).unwrap();
        for _ in 0..60 {
            registry.flush();
        }
        let snap = registry.flush();
        let rules = e.rules.len();
        let iters = 200;
        let t = Instant::now();
        for _ in 0..iters {
            e.step(&snap, Instant::now());
        }
        let per_rule = t.elapsed() / (iters * rules as u32);
        println!("alert evaluation: {per_rule:?} per rule per tick ({rules} rules: windowed p99, windowed error_rate, cumulative p99, gauge)");
        assert!(e.rules.iter().all(|l| l.invalid.is_none()));
    }
}
