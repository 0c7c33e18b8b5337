//! Notifications: what happened to a rule ([`NotificationKind`], [`Notification`]) and the
//! notifier thread that hands them to the callbacks.

use std::{
    fmt,
    sync::{
        mpsc::{sync_channel, SyncSender},
        Arc,
    },
    time::SystemTime,
};

use super::expr::{self, Dim};
use super::rule::AlertState;

/// Default capacity of the notification queue.
pub const DEFAULT_QUEUE: usize = 1024;
/// Name of the notifier thread.
pub const THREAD_NAME: &str = "sm-alerts";

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

pub(super) type Callback = Box<dyn FnMut(&Notification) + Send>;

/// Starts the notifier thread: it calls `callbacks` with every notification sent on the returned
/// queue of capacity `queue`.
pub(super) fn spawn_notifier(queue: usize, mut callbacks: Vec<Callback>) -> SyncSender<Notification> {
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
