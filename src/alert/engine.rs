//! The engine: [`Alerts`] (rules and callbacks, installed on a registry) and the observer that
//! evaluates every rule on every snapshot, with each rule's pending and notified state.

use std::{
    fmt,
    sync::{
        mpsc::{SyncSender, TrySendError},
        Arc,
    },
    time::Instant,
};

use super::expr::{Dim, Hold};
use super::notification::{spawn_notifier, Callback, Notification, NotificationKind, DEFAULT_QUEUE};
use super::rule::{AlertState, Compiled, Rule, RuleError};
use super::sample::sample;
use crate::self_metrics;
use crate::{Counter, Error, Family, Gauge, Registry, Snapshot};

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

impl crate::aggregator::Observer for Engine {
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

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, time::Duration};

    use super::*;
    use crate::Unit;

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
