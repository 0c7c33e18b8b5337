//! Metric kinds and units.

#![forbid(unsafe_code)]

use std::fmt;

/// What a series measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Monotonic `u64` total.
    Counter,
    /// `f64` value that goes up and down (last write wins).
    Gauge,
    /// Distribution of `u64` values in base-2 exponential (native-histogram) buckets.
    Histogram,
}

impl Kind {
    /// Lower-case name as used in exposition formats.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unit of a metric's values. Exporters convert time units to seconds (Prometheus base
/// units) and add the unit suffix to the exported name when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Unit {
    /// No unit (a plain number).
    #[default]
    None,
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
    Bytes,
    /// A ratio (0..1).
    Ratio,
}

impl Unit {
    /// Factor that converts a value in this unit to the exported base unit.
    pub fn to_base(self) -> f64 {
        match self {
            Unit::Nanoseconds => 1e-9,
            Unit::Microseconds => 1e-6,
            Unit::Milliseconds => 1e-3,
            _ => 1.0,
        }
    }

    /// A recorded value in the exported base unit. Divides by the exact power of ten (10⁹ for
    /// ns) rather than multiplying by its inexact reciprocal: the quotient is correctly rounded,
    /// so 900000 ns is 0.0009, not 0.0009000000000000001. Every export (text, remote write)
    /// converts through here so they agree bit for bit.
    pub(crate) fn value_in_base(self, v: u64) -> f64 {
        match self {
            Unit::Nanoseconds => v as f64 / 1e9,
            Unit::Microseconds => v as f64 / 1e6,
            Unit::Milliseconds => v as f64 / 1e3,
            _ => v as f64,
        }
    }

    /// The base unit's name as used in metric name suffixes and OpenMetrics `# UNIT`.
    pub fn base_name(self) -> Option<&'static str> {
        match self {
            Unit::None => None,
            Unit::Nanoseconds | Unit::Microseconds | Unit::Milliseconds | Unit::Seconds => Some("seconds"),
            Unit::Bytes => Some("bytes"),
            Unit::Ratio => Some("ratio"),
        }
    }

    /// Whether the unit is a duration (timers record in it).
    pub fn is_time(self) -> bool {
        matches!(self, Unit::Nanoseconds | Unit::Microseconds | Unit::Milliseconds | Unit::Seconds)
    }

    /// Converts an elapsed duration in nanoseconds into this unit (nanoseconds for non-time
    /// units), rounding down.
    #[inline]
    pub(crate) fn convert_nanos(self, nanos: u64) -> u64 {
        match self {
            Unit::Microseconds => nanos / 1_000,
            Unit::Milliseconds => nanos / 1_000_000,
            Unit::Seconds => nanos / 1_000_000_000,
            _ => nanos,
        }
    }

    /// Lower-case name of the unit itself.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::None => "",
            Unit::Nanoseconds => "nanoseconds",
            Unit::Microseconds => "microseconds",
            Unit::Milliseconds => "milliseconds",
            Unit::Seconds => "seconds",
            Unit::Bytes => "bytes",
            Unit::Ratio => "ratio",
        }
    }
}
