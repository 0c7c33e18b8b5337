//! Operations, caches and state sets: the per-function / per-stage statistics the old Python
//! monitors kept, built from ordinary series so every exporter carries them.
//!
//! * An [`Operation`] named `db_query` is three series sharing its labels:
//!   `db_query_duration` (nanosecond histogram, exported as `db_query_duration_seconds`),
//!   `db_query_calls_total` and `db_query_errors_total`. [`crate::Snapshot::operation`] derives
//!   count, errors, error and success rate, total time, mean, min, max, standard deviation,
//!   quantiles and throughput from them.
//! * A [`Cache`] named `users` is `users_hits_total`, `users_misses_total`,
//!   `users_evictions_total` and the gauge `users_size`; [`crate::Snapshot::cache`] adds the
//!   hit rate.
//! * A [`StateSet`] named `breaker` with states `closed`, `open`, `half_open` is the
//!   OpenMetrics-style gauge family `breaker{breaker="…"}` (1 for the current state, 0 for the
//!   others), `breaker_transitions_total{from,to}` and `breaker_state_seconds_total{state}`
//!   (time spent in each state, credited when the state is left).

use std::{
    fmt,
    time::{Duration, Instant},
};

use crate::{
    sync::{lock, Arc, Mutex},
    Counter, Error, Family, Gauge, Histogram, Registry, Unit,
};

/// Builds an [`Operation`]; see [`Registry::operation`].
#[must_use = "a builder registers nothing until `build()`"]
#[derive(Debug)]
pub struct OperationBuilder<'r> {
    registry: &'r Registry,
    name: String,
    help: Option<String>,
    labels: Vec<(String, String)>,
    min_duration: Duration,
}

impl<'r> OperationBuilder<'r> {
    pub(crate) fn new(registry: &'r Registry, name: &str) -> Self {
        OperationBuilder {
            registry,
            name: name.to_owned(),
            help: None,
            labels: Vec::new(),
            min_duration: Duration::ZERO,
        }
    }

    /// Help text, used for all three series.
    pub fn help(mut self, help: &str) -> Self {
        self.help = Some(help.to_owned());
        self
    }

    /// A constant label on all three series.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.labels.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Timings shorter than `d` are not put in the latency histogram (calls and errors are
    /// still counted), like the old monitors' "minimum duration to record".
    pub fn min_duration(mut self, d: Duration) -> Self {
        self.min_duration = d;
        self
    }

    /// Registers the operation's series.
    pub fn build(self) -> Result<Operation, Error> {
        let help = self.help.unwrap_or_else(|| format!("Operation {}", self.name));
        let labels: Vec<(&str, &str)> = self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let name = &self.name;
        let latency = self
            .registry
            .histogram(&format!("{name}_duration"))
            .unit(Unit::Nanoseconds)
            .help(&help)
            .labels(&labels)
            .build()?;
        let calls = self.registry.counter(&format!("{name}_calls_total")).help(&help).labels(&labels).build()?;
        let errors = self.registry.counter(&format!("{name}_errors_total")).help(&help).labels(&labels).build()?;
        self.registry.note_operation(&self.name);
        Ok(Operation { latency, calls, errors, min_nanos: self.min_duration.as_nanos().min(u64::MAX as u128) as u64 })
    }
}

/// A timed operation with success and error counts. Cheap to clone, `Send + Sync`.
#[derive(Clone)]
#[must_use = "operations do nothing unless you use them"]
pub struct Operation {
    latency: Histogram,
    calls: Counter,
    errors: Counter,
    min_nanos: u64,
}

impl fmt::Debug for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operation").field("min_nanos", &self.min_nanos).finish_non_exhaustive()
    }
}

impl Operation {
    /// Records one call that took `elapsed`, successful or not.
    #[inline]
    pub fn record(&self, elapsed: Duration, ok: bool) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.calls.inc();
        if !ok {
            self.errors.inc();
        }
        if nanos >= self.min_nanos {
            self.latency.record(nanos);
        }
    }

    /// Runs `f` and records its duration as a successful call.
    #[inline]
    pub fn time<R>(&self, f: impl FnOnce() -> R) -> R {
        let g = self.start();
        let r = f();
        drop(g);
        r
    }

    /// Runs `f` and records its duration; an `Err` counts as an error.
    #[inline]
    pub fn time_result<T, E>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let g = self.start();
        let r = f();
        if r.is_err() {
            g.fail();
        }
        r
    }

    /// Starts timing a call; it is recorded when the guard drops (as an error if
    /// [`OperationGuard::fail`] was called).
    #[inline]
    pub fn start(&self) -> OperationGuard<'_> {
        OperationGuard { op: self, start: crate::clock::now(), ok: true, armed: true }
    }
}

/// Records an operation's call when dropped.
#[must_use = "the call is recorded when the guard is dropped"]
pub struct OperationGuard<'a> {
    op: &'a Operation,
    /// Raw clock reading ([`crate::clock`]).
    start: u64,
    ok: bool,
    armed: bool,
}

impl OperationGuard<'_> {
    /// Marks the call failed and records it now.
    pub fn fail(mut self) {
        self.ok = false;
        self.finish();
    }

    /// Records the call as successful now.
    pub fn succeed(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        if std::mem::take(&mut self.armed) {
            self.op.record(Duration::from_nanos(crate::clock::nanos_since(self.start)), self.ok);
        }
    }
}

impl Drop for OperationGuard<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for OperationGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperationGuard").field("start", &self.start).field("ok", &self.ok).finish_non_exhaustive()
    }
}

/// Cache hit/miss/eviction counters and a size gauge. Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
#[must_use = "cache stats do nothing unless you use them"]
pub struct Cache {
    hits: Counter,
    misses: Counter,
    evictions: Counter,
    size: Gauge,
}

impl Cache {
    pub(crate) fn new(registry: &Registry, name: &str, help: &str) -> Result<Cache, Error> {
        Ok(Cache {
            hits: registry.counter(&format!("{name}_hits_total")).help(help).build()?,
            misses: registry.counter(&format!("{name}_misses_total")).help(help).build()?,
            evictions: registry.counter(&format!("{name}_evictions_total")).help(help).build()?,
            size: registry.gauge(&format!("{name}_size")).help(help).build()?,
        })
    }

    #[inline]
    pub fn hit(&self) {
        self.hits.inc();
    }

    #[inline]
    pub fn miss(&self) {
        self.misses.inc();
    }

    #[inline]
    pub fn evict(&self, n: u64) {
        self.evictions.add(n);
    }

    /// Sets the current number of entries.
    #[inline]
    pub fn set_size(&self, entries: usize) {
        self.size.set(entries as f64);
    }
}

/// An enum-like state (e.g. a circuit breaker) with transition counts and time in state.
/// Cheap to clone, `Send + Sync`.
#[derive(Clone)]
#[must_use = "state sets do nothing unless you use them"]
pub struct StateSet {
    inner: Arc<StateInner>,
}

struct StateInner {
    states: Vec<String>,
    flags: Vec<Gauge>,
    transitions: Family<Counter>,
    time_in_state: Vec<Counter>,
    /// The current state and when it was entered, changed together: a transition reads both,
    /// credits the state it leaves and moves the flags under this lock, so transitions from
    /// several threads are one sequence (a cold path: breakers change state rarely).
    current: Mutex<Current>,
    epoch: Instant,
}

#[derive(Clone, Copy)]
struct Current {
    state: usize,
    /// Nanoseconds since `epoch` when `state` was entered.
    since: u64,
}

impl fmt::Debug for StateSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSet").field("state", &self.state()).finish_non_exhaustive()
    }
}

impl StateSet {
    pub(crate) fn new(registry: &Registry, name: &str, states: &[&str], help: &str) -> Result<StateSet, Error> {
        if states.is_empty() {
            return Err(Error::LabelCount { name: name.to_owned(), expected: 1, got: 0 });
        }
        let flags = states
            .iter()
            .map(|s| registry.gauge(name).help(help).stateset().label(name, s).build())
            .collect::<Result<Vec<_>, _>>()?;
        let time_in_state = states
            .iter()
            .map(|s| {
                registry
                    .counter(&format!("{name}_state_seconds_total"))
                    .unit(Unit::Nanoseconds)
                    .help(help)
                    .label("state", s)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let transitions = registry.counter(&format!("{name}_transitions_total")).help(help).family(&["from", "to"])?;
        flags[0].set(1.0);
        Ok(StateSet {
            inner: Arc::new(StateInner {
                states: states.iter().map(|s| (*s).to_owned()).collect(),
                flags,
                transitions,
                time_in_state,
                current: Mutex::new(Current { state: 0, since: 0 }),
                epoch: Instant::now(),
            }),
        })
    }

    /// Moves to `state` and returns `true`; an unknown state changes nothing and returns
    /// `false`. Setting the current state again is a no-op.
    ///
    /// Transitions from several threads are serialised (a lock held for the few stores of one
    /// transition), so they form one path: each credits the state it leaves with exactly the
    /// time since that state was entered, and once transitions stop exactly one state's flag is
    /// 1. A snapshot merged while a transition is in progress may catch its flags halfway.
    pub fn set(&self, state: &str) -> bool {
        let i = &*self.inner;
        let Some(next) = i.states.iter().position(|s| s == state) else { return false };
        let mut current = lock(&i.current);
        let prev = current.state;
        if prev == next {
            return true;
        }
        let now = i.epoch.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        let entered = std::mem::replace(&mut *current, Current { state: next, since: now }).since;
        i.time_in_state[prev].add(now.saturating_sub(entered));
        i.flags[prev].set(0.0);
        i.flags[next].set(1.0);
        i.transitions.with(&[&i.states[prev], &i.states[next]]).inc();
        true
    }

    /// The current state.
    pub fn state(&self) -> &str {
        &self.inner.states[lock(&self.inner.current).state]
    }
}
