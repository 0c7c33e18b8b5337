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
//! * **Evaluation**: an [`crate::aggregator::Observer`] evaluates every rule right after each publish, on the
//!   ticking thread. The statistic is compared in base units (seconds, bytes, ratio — the
//!   Prometheus exposition's units); see [`expr`] for the grammar and the stats.
//! * **Levels**: the expression's threshold is the warning level (or the critical one with
//!   [`Rule::severity`]); [`Rule::critical`] / [`Rule::warning`] add the other. With `>`/`>=`
//!   critical must not be below warning, with `<`/`<=` not above.
//! * **`for`** ([`Hold`](expr::Hold)): a level fires once its condition held on N consecutive ticks
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
mod engine;
pub mod expr;
mod notification;
mod rule;
mod sample;

pub use config::ConfigError;
pub use engine::Alerts;
pub use notification::{Notification, NotificationKind, DEFAULT_QUEUE, THREAD_NAME};
pub use rule::{AlertState, Rule, RuleError, Severity};
