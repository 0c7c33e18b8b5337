//! [`MetricBuilder`]: the options of a counter, gauge or histogram before it is registered
//! (help, unit, labels, precision, `le` bounds, quantile series).

use std::{fmt, sync::Arc, time::Duration};

use crate::{
    catalogue::Def,
    error::Error,
    metric::{
        family::{Family, FamilyInner},
        histogram::Histogram,
    },
    registry::Registry,
    sync::lock,
    Kind, Unit,
};

/// Builds a counter, gauge or histogram (see [`Registry::counter`] and friends).
#[must_use = "a builder registers nothing until `build()` or `family()`"]
pub struct MetricBuilder<'r, M> {
    registry: &'r Registry,
    def: Def,
    _kind: std::marker::PhantomData<fn() -> M>,
}

impl<M> fmt::Debug for MetricBuilder<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricBuilder").field("def", &self.def).finish_non_exhaustive()
    }
}

impl<'r, M: crate::metric::Metric> MetricBuilder<'r, M> {
    pub(crate) fn new(registry: &'r Registry, name: &str, kind: Kind) -> Self {
        MetricBuilder { registry, def: Def::new(name, kind), _kind: std::marker::PhantomData }
    }

    /// Help text (exported as `# HELP`).
    pub fn help(mut self, help: &str) -> Self {
        self.def.help = Some(help.to_owned());
        self
    }

    /// Unit of the values (time units are exported in seconds).
    pub fn unit(mut self, unit: Unit) -> Self {
        self.def.unit = unit;
        self
    }

    /// Adds a constant label to this series. Order does not matter.
    pub fn label(mut self, name: &str, value: &str) -> Self {
        self.def.labels.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds several constant labels.
    pub fn labels(mut self, pairs: &[(&str, &str)]) -> Self {
        self.def.labels.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Registers the series (or returns the existing one with the same definition).
    pub fn build(self) -> Result<M, Error> {
        let core = self.registry.core();
        let unit = self.def.unit;
        let store = core.resolve(|c| c.register(self.def)).inspect_err(|e| count_limit(core, e))?;
        Ok(M::from_store(core.clone(), store, unit))
    }

    /// Registers a labelled family: one series per distinct tuple of label values, looked up
    /// with [`Family::with`]. Constant labels given with [`MetricBuilder::label`] are not
    /// allowed here (give every label name).
    pub fn family(self, label_names: &[&str]) -> Result<Family<M>, Error> {
        let core = self.registry.core();
        let names: Vec<Arc<str>> = label_names.iter().map(|s| Arc::from(*s)).collect();
        let registered = lock(&core.catalogue).register_family(&self.def, &names);
        let index = registered.inspect_err(|e| count_limit(core, e))?;
        Ok(Family::new(FamilyInner::new(core.clone(), index, Arc::from(self.def.name.as_str()), names, self.def.unit)))
    }
}

/// A registration refused by a length limit is also counted in
/// `shardmetrics_rejected_values_total`, so a service that ignores the `Err` still shows it.
/// (Called after the catalogue lock is released: counting records into a counter.)
fn count_limit(core: &crate::store::Core, e: &Error) {
    if matches!(e, Error::TooLong { .. }) {
        core.reject();
    }
}

impl MetricBuilder<'_, crate::Gauge> {
    /// Marks the gauge family as an OpenMetrics StateSet (see [`crate::metric::StateSet`]).
    pub(crate) fn stateset(mut self) -> Self {
        self.def.stateset = true;
        self
    }
}

impl MetricBuilder<'_, Histogram> {
    /// The exponential schema (Prometheus native histograms, OpenTelemetry's scale): `2^bits`
    /// buckets per power of two. Default 5: ≤ 1.79 % relative quantile error (1.1 % above
    /// 1,357), 272 B per populated power of two per thread. Range `0..=8`
    /// ([`Histogram::MIN_PRECISION`](crate::Histogram::MIN_PRECISION)`..=`[`MAX_PRECISION`](crate::Histogram::MAX_PRECISION)).
    pub fn precision(mut self, bits: u8) -> Self {
        self.def.precision = bits;
        self
    }

    /// `le` boundaries for the classic-histogram exposition, in the exported base unit
    /// (seconds for time units). The default suits latencies from 1 µs to 10 s.
    pub fn buckets(mut self, bounds: &[f64]) -> Self {
        self.def.buckets = Some(bounds.to_vec());
        self
    }

    /// Also exports summary-style quantile series, e.g. `&[0.5, 0.9, 0.99, 0.999]`: a family
    /// of type `summary` named after the histogram's exported name plus `_quantiles`
    /// (`http_request_duration_seconds_quantiles{quantile="0.99"}`, with `_sum` and `_count`),
    /// rendered beside the classic histogram in both text formats. Quantiles are computed from
    /// the merged fine buckets at render time (within the precision's relative error), since
    /// the start or over [`quantile_window`](Self::quantile_window). Each must be in `0..=1`,
    /// ascending.
    pub fn quantiles(mut self, quantiles: &[f64]) -> Self {
        self.def.quantiles = Some(quantiles.to_vec());
        self
    }

    /// Computes the exported quantiles over the last `window` (one of the registry's
    /// [`RegistryBuilder::windows`](crate::RegistryBuilder::windows)) instead of since the start, like a Prometheus summary's sliding
    /// window. Needs [`quantiles`](Self::quantiles).
    pub fn quantile_window(mut self, window: Duration) -> Self {
        self.def.quantile_window = Some(window);
        self
    }
}
