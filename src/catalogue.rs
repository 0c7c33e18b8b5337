//! The series catalogue: `(name, labels) → Store`, with validation, the exposition-name clash
//! check, cardinality caps and overflow series, and the view the aggregator merges from.
//! Behind the registry's mutex: only registration and the aggregator's view refresh take it,
//! never the recording path.

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::{
    buckets,
    error::{validate_label_name, validate_metric_name, Error},
    metric::gauge::GaugeStore,
    shard::{CounterLoc, HistLoc},
    snapshot::{FamilyInfo, Labels},
    store::Store,
    sync::OnceBox,
    Kind, Unit,
};

/// A metric definition collected by a builder.
#[derive(Debug, Clone)]
pub(crate) struct Def {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) help: Option<String>,
    pub(crate) unit: Unit,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) precision: u8,
    pub(crate) buckets: Option<Vec<f64>>,
    pub(crate) quantiles: Option<Vec<f64>>,
    pub(crate) quantile_window: Option<Duration>,
    /// A gauge family that is an OpenMetrics StateSet (one 0/1 series per state).
    pub(crate) stateset: bool,
}

impl Def {
    pub(crate) fn new(name: &str, kind: Kind) -> Def {
        Def {
            name: name.to_owned(),
            kind,
            help: None,
            unit: Unit::None,
            labels: Vec::new(),
            precision: buckets::DEFAULT_PRECISION,
            buckets: None,
            quantiles: None,
            quantile_window: None,
            stateset: false,
        }
    }

    pub(crate) fn help(mut self, help: &str) -> Def {
        self.help = Some(help.to_owned());
        self
    }
}

struct FamilyEntry {
    info: Arc<FamilyInfo>,
    /// Sorted label names.
    label_names: Box<[Arc<str>]>,
    series: usize,
    overflow: Option<Store>,
}

/// One series as the catalogue, the aggregator and snapshots see it: labels, where its cells
/// are, its family. Written once at registration; its id is its position.
#[derive(Clone)]
pub(crate) struct ViewEntry {
    pub(crate) labels: Labels,
    pub(crate) store: Store,
    /// Index into the view's `families`.
    pub(crate) family: u32,
    /// Dense number among the series of its kind: counter, gauge or histogram number.
    pub(crate) slot: u32,
}

// Labels one pointer, store 16 B, two numbers: a million series' entries are 32 MB.
const _: () = assert!(std::mem::size_of::<ViewEntry>() == 32);

/// Every series by id, in immutable chunks shared by the catalogue and every view (a view
/// never copies a series another view already holds).
#[derive(Clone, Default)]
pub(crate) struct Records {
    chunks: Vec<Arc<[ViewEntry]>>,
    /// First id of each chunk.
    starts: Vec<u32>,
    sealed: usize,
}

impl Records {
    /// The series with this id (which must exist).
    #[inline]
    pub(crate) fn get(&self, id: usize) -> &ViewEntry {
        let c = self.starts.partition_point(|&s| s as usize <= id) - 1;
        &self.chunks[c][id - self.starts[c] as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.sealed
    }

    /// `(id, entry)` in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &ViewEntry)> {
        self.chunks.iter().flat_map(|c| c.iter()).enumerate().map(|(id, e)| (id as u32, e))
    }

    /// Appends `tail` as a chunk. Neighbouring chunks are merged while the older is at most
    /// twice the newer (a binary-counter schedule): O(log n) chunks, and each series is copied
    /// O(log n) times over the registry's life.
    fn seal(&mut self, tail: Vec<ViewEntry>) {
        if tail.is_empty() {
            return;
        }
        self.starts.push(self.sealed as u32);
        self.sealed += tail.len();
        self.chunks.push(tail.into());
        while self.chunks.len() >= 2 {
            let n = self.chunks.len();
            if self.chunks[n - 2].len() > 2 * self.chunks[n - 1].len() {
                break;
            }
            let last = self.chunks.pop().expect("two chunks");
            self.starts.pop();
            let prev = self.chunks.pop().expect("two chunks");
            self.chunks.push(prev.iter().chain(last.iter()).cloned().collect());
        }
    }
}

/// The catalogue as the aggregator sees it, rebuilt only when something was registered; shared
/// by every snapshot taken until then.
#[derive(Default)]
pub(crate) struct View {
    pub(crate) records: Records,
    /// Ids sorted by name, then labels.
    pub(crate) order: Arc<[u32]>,
    pub(crate) families: Arc<[Arc<FamilyInfo>]>,
    pub(crate) counters: usize,
    pub(crate) gauges: usize,
    pub(crate) histograms: usize,
    pub(crate) operations: Arc<[Arc<str>]>,
}

impl View {
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// The series at sorted position `pos`: its id and entry.
    #[inline]
    pub(crate) fn at(&self, pos: usize) -> (u32, &ViewEntry) {
        let id = self.order[pos];
        (id, self.records.get(id as usize))
    }

    pub(crate) fn family_of(&self, e: &ViewEntry) -> &Arc<FamilyInfo> {
        &self.families[e.family as usize]
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("series", &self.order.len()).finish_non_exhaustive()
    }
}

/// The registry's catalogue. Behind a mutex: only registration and the aggregator's view
/// refresh take it, never the recording path.
pub(crate) struct Catalogue {
    limits: Limits,
    families: Vec<FamilyEntry>,
    family_by_name: HashMap<Arc<str>, usize>,
    /// Every family and sample name the text renders use, with the family that uses it.
    exposed: HashMap<String, Arc<str>>,
    /// Every series by id: sealed chunks (shared with views) and the tail since the last view.
    records: Records,
    tail: Vec<ViewEntry>,
    /// Series ids by (family, labels), and by id 32 bits of each key's hash (`key_hashes`), so
    /// growing the table and most failed probes never read a series' labels: 4 + 4 bytes a
    /// series (at the table's load).
    by_key: hashbrown::HashTable<u32>,
    key_hashes: Vec<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    counters: usize,
    gauges: usize,
    pub(crate) hist_precisions: Vec<u8>,
    /// The family of each histogram, by dense histogram number.
    hist_families: Vec<u32>,
    max_series: usize,
    max_per_family: usize,
    /// The registry's window lengths (a histogram's quantile window must be one of them).
    windows: Vec<Duration>,
    view: Arc<View>,
    dirty: bool,
    operations: Vec<Arc<str>>,
}

/// Length limits on what a registration may carry, in bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Metric and label names.
    pub(crate) name: usize,
    pub(crate) label_value: usize,
}

impl Limits {
    fn check(&self, metric: &str, what: &'static str, s: &str, max: usize) -> Result<(), Error> {
        if s.len() > max {
            return Err(Error::TooLong { metric: crate::error::cut(metric), what, len: s.len(), max });
        }
        Ok(())
    }
}

/// The outcome of a series look-up in the catalogue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Registered {
    pub(crate) store: Store,
    /// A cap redirected the look-up to the family's overflow series.
    pub(crate) overflowed: bool,
}

/// `Labels` from pairs in any order: sorted on the stack for up to 8 labels (no allocation
/// besides the labels' own), else in a `Vec`.
fn sorted_labels<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Labels {
    const STACK: usize = 8;
    if pairs.len() <= STACK {
        let mut buf = [("", ""); STACK];
        let n = pairs.len();
        for (slot, p) in buf.iter_mut().zip(pairs) {
            *slot = p;
        }
        let buf = &mut buf[..n];
        buf.sort_unstable();
        Labels::from_sorted(buf.iter().copied())
    } else {
        let mut v: Vec<(&str, &str)> = pairs.collect();
        v.sort_unstable();
        Labels::from_sorted(v.into_iter())
    }
}

/// The table's hash of a 32-bit key hash: hashbrown takes the bucket from the low bits and its
/// 7-bit tag from the top ones, so the 32 bits go to both halves.
fn table_hash(hash: u32) -> u64 {
    u64::from(hash) << 32 | u64::from(hash)
}

impl Catalogue {
    /// 32 bits of the hash of a (family, labels) key.
    fn key_hash(&self, family: usize, labels: &Labels) -> u32 {
        use std::hash::BuildHasher;
        (self.hasher.hash_one((family, labels)) >> 32) as u32
    }

    /// Remembers `name` as an operation (for `Snapshot::operations`), once.
    pub(crate) fn note_operation(&mut self, name: &str) {
        if !self.operations.iter().any(|o| &**o == name) {
            self.operations.push(Arc::from(name));
            self.dirty = true;
        }
    }

    pub(crate) fn new(max_series: usize, max_per_family: usize, windows: Vec<Duration>, limits: Limits) -> Self {
        Catalogue {
            limits,
            windows,
            families: Vec::new(),
            family_by_name: HashMap::new(),
            exposed: HashMap::new(),
            records: Records::default(),
            tail: Vec::new(),
            by_key: hashbrown::HashTable::new(),
            key_hashes: Vec::new(),
            hasher: hashbrown::DefaultHashBuilder::default(),
            counters: 0,
            gauges: 0,
            hist_precisions: Vec::new(),
            hist_families: Vec::new(),
            max_series,
            max_per_family,
            view: Arc::new(View::default()),
            dirty: true,
            operations: Vec::new(),
        }
    }

    /// Number of series registered.
    pub(crate) fn len(&self) -> usize {
        self.records.len() + self.tail.len()
    }

    /// The series with this id.
    fn entry(&self, id: usize) -> &ViewEntry {
        match id.checked_sub(self.records.len()) {
            Some(t) => &self.tail[t],
            None => self.records.get(id),
        }
    }

    /// The current view, rebuilt if something was registered since the last call: the new
    /// series are sealed into a chunk (the older chunks are shared, not copied) and merged into
    /// the sorted order.
    pub(crate) fn view(&mut self) -> Arc<View> {
        if self.dirty {
            let families: Arc<[Arc<FamilyInfo>]> = self.families.iter().map(|f| f.info.clone()).collect();
            let old = self.records.len();
            self.records.seal(std::mem::take(&mut self.tail));
            let records = &self.records;
            let key = |id: u32| {
                let e = records.get(id as usize);
                (&*families[e.family as usize].name, &e.labels)
            };
            let mut new: Vec<u32> = (old as u32..records.len() as u32).collect();
            new.sort_by(|&a, &b| key(a).cmp(&key(b)));
            let prev = &self.view.order;
            let mut order = Vec::with_capacity(prev.len() + new.len());
            let (mut i, mut j) = (0, 0);
            while i < prev.len() && j < new.len() {
                if key(new[j]) < key(prev[i]) {
                    order.push(new[j]);
                    j += 1;
                } else {
                    order.push(prev[i]);
                    i += 1;
                }
            }
            order.extend_from_slice(&prev[i..]);
            order.extend_from_slice(&new[j..]);
            self.view = Arc::new(View {
                records: self.records.clone(),
                order: order.into(),
                families,
                counters: self.counters,
                gauges: self.gauges,
                histograms: self.hist_precisions.len(),
                operations: self.operations.iter().cloned().collect(),
            });
            self.dirty = false;
        }
        self.view.clone()
    }

    /// Validates `def`'s name and label names, and finds or creates its family.
    fn family_for(&mut self, def: &Def, label_names: &[Arc<str>]) -> Result<usize, Error> {
        self.limits.check(&def.name, "metric name", &def.name, self.limits.name)?;
        validate_metric_name(&def.name)?;
        for (i, l) in label_names.iter().enumerate() {
            self.limits.check(&def.name, "label name", l, self.limits.name)?;
            validate_label_name(&def.name, l, def.kind)?;
            if label_names[..i].contains(l) {
                return Err(Error::DuplicateLabel { metric: def.name.clone(), label: l.to_string() });
            }
        }
        if def.kind == Kind::Histogram {
            if !(buckets::MIN_PRECISION..=buckets::MAX_PRECISION).contains(&def.precision) {
                return Err(Error::InvalidPrecision { name: def.name.clone(), precision: def.precision });
            }
            if let Some(b) = &def.buckets {
                if b.is_empty() || b.iter().any(|x| !x.is_finite()) || b.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(Error::InvalidBuckets { name: def.name.clone() });
                }
            }
            let invalid = |reason| Err(Error::InvalidQuantiles { name: def.name.clone(), reason });
            match (&def.quantiles, def.quantile_window) {
                (Some(q), _) if q.is_empty() => return invalid("no quantiles given"),
                (Some(q), _) if q.iter().any(|x| !(0.0..=1.0).contains(x)) => {
                    return invalid("every quantile must be in 0..=1")
                }
                (Some(q), _) if q.windows(2).any(|w| w[0] >= w[1]) => {
                    return invalid("quantiles must be strictly ascending")
                }
                (None, Some(_)) => return invalid("a quantile window needs quantiles"),
                (_, Some(w)) if !self.windows.contains(&w) => {
                    return invalid("the quantile window is not one of the registry's windows")
                }
                _ => {}
            }
        }
        let mut sorted: Vec<Arc<str>> = label_names.to_vec();
        sorted.sort();
        if let Some(&f) = self.family_by_name.get(def.name.as_str()) {
            let fam = &mut self.families[f];
            let info = &fam.info;
            if info.kind != def.kind {
                return Err(Error::KindMismatch { name: def.name.clone(), registered: info.kind, requested: def.kind });
            }
            if *fam.label_names != *sorted {
                return Err(Error::LabelNamesMismatch {
                    name: def.name.clone(),
                    registered: fam.label_names.iter().map(|s| s.to_string()).collect(),
                    requested: sorted.iter().map(|s| s.to_string()).collect(),
                });
            }
            if info.unit != def.unit {
                return Err(Error::ConfigMismatch { name: def.name.clone(), what: "unit" });
            }
            if def.kind == Kind::Histogram {
                if info.precision != def.precision {
                    return Err(Error::ConfigMismatch { name: def.name.clone(), what: "precision" });
                }
                if def.buckets.is_some() && info.buckets.as_deref() != def.buckets.as_deref() {
                    return Err(Error::ConfigMismatch { name: def.name.clone(), what: "bucket layout" });
                }
                if def.quantiles.is_some()
                    && (info.quantiles.as_deref() != def.quantiles.as_deref()
                        || info.quantile_window != def.quantile_window)
                {
                    return Err(Error::ConfigMismatch { name: def.name.clone(), what: "quantiles" });
                }
            }
            if let Some(h) = &def.help {
                if fam.info.help.is_empty() && !h.is_empty() {
                    let mut info = (*fam.info).clone();
                    info.help = Arc::from(h.as_str());
                    info.headers = OnceBox::new();
                    fam.info = Arc::new(info);
                    self.dirty = true;
                }
            }
            return Ok(f);
        }
        let name: Arc<str> = Arc::from(def.name.as_str());
        let info = FamilyInfo {
            name: name.clone(),
            kind: def.kind,
            help: Arc::from(def.help.as_deref().unwrap_or("")),
            unit: def.unit,
            precision: def.precision,
            buckets: def.buckets.as_deref().map(Arc::from),
            quantiles: def.quantiles.as_deref().map(Arc::from),
            quantile_window: def.quantile_window,
            stateset: def.stateset,
            headers: OnceBox::new(),
        };
        let exposed = crate::exposition::exposition_names(info.desc());
        if let Some((n, other)) = exposed.iter().find_map(|n| self.exposed.get(n).map(|o| (n, o))) {
            let (exported, other) = (n.clone(), other.to_string());
            return Err(Error::ExpositionClash { name: def.name.clone(), exported, other });
        }
        for n in exposed {
            self.exposed.insert(n, name.clone());
        }
        self.families.push(FamilyEntry { info: Arc::new(info), label_names: sorted.into(), series: 0, overflow: None });
        self.family_by_name.insert(name, self.families.len() - 1);
        Ok(self.families.len() - 1)
    }

    #[cfg(feature = "metrics-facade")]
    /// The kind and unit of the family called `name`, if one is registered.
    pub(crate) fn family_kind_unit(&self, name: &str) -> Option<(Kind, Unit)> {
        let f = *self.family_by_name.get(name)?;
        Some((self.families[f].info.kind, self.families[f].info.unit))
    }

    #[cfg(feature = "metrics-facade")]
    /// Fills in the help text and unit of an already registered family, each only while it is
    /// still empty (`""`, [`Unit::None`]); `Unit::None` leaves the unit alone. For descriptions
    /// that arrive after the first series was registered (the `metrics` facade's `describe_*!`).
    /// Callers make sure a new unit does not reinterpret values already recorded.
    pub(crate) fn describe(&mut self, name: &str, help: &str, unit: Unit) {
        let Some(&f) = self.family_by_name.get(name) else {
            return;
        };
        let fam = &mut self.families[f];
        let set_help = fam.info.help.is_empty() && !help.is_empty();
        let set_unit = fam.info.unit == Unit::None && unit != Unit::None;
        if set_help || set_unit {
            let mut info = (*fam.info).clone();
            if set_help {
                info.help = Arc::from(help);
            }
            if set_unit {
                info.unit = unit;
            }
            info.headers = OnceBox::new();
            fam.info = Arc::new(info);
            self.dirty = true;
        }
    }

    /// Registers (or finds) a single series from a builder.
    pub(crate) fn register(&mut self, def: Def) -> Result<Registered, Error> {
        let names: Vec<Arc<str>> = def.labels.iter().map(|(k, _)| Arc::from(k.as_str())).collect();
        let f = self.family_for(&def, &names)?;
        for (_, v) in &def.labels {
            self.limits.check(&def.name, "label value", v, self.limits.label_value)?;
        }
        self.series_in(f, sorted_labels(def.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }

    /// Registers (or finds) a family without series.
    pub(crate) fn register_family(&mut self, def: &Def, label_names: &[Arc<str>]) -> Result<usize, Error> {
        if !def.labels.is_empty() {
            let (k, _) = &def.labels[0];
            return Err(Error::LabelNamesMismatch {
                name: def.name.clone(),
                registered: label_names.iter().map(|s| s.to_string()).collect(),
                requested: vec![k.clone()],
            });
        }
        self.family_for(def, label_names)
    }

    /// The series of family `f` with these label values (given in `names` order).
    pub(crate) fn family_series(&mut self, f: usize, names: &[Arc<str>], values: &[&str]) -> Result<Registered, Error> {
        if names.len() != values.len() {
            return Err(Error::LabelCount {
                name: self.families[f].info.name.to_string(),
                expected: names.len(),
                got: values.len(),
            });
        }
        for v in values {
            self.limits.check(&self.families[f].info.name, "label value", v, self.limits.label_value)?;
        }
        self.series_in(f, sorted_labels(names.iter().map(|k| &**k).zip(values.iter().copied())))
    }

    /// The exported `le` bounds of histogram `index`, converted into its recording unit.
    pub(crate) fn exemplar_bounds(&self, index: usize) -> Box<[f64]> {
        let info = &self.families[self.hist_families[index] as usize].info;
        info.le_bounds().iter().map(|&b| crate::exposition::bound_in_unit(b, info.unit())).collect()
    }

    /// The overflow series of family `f` (created on first use).
    pub(crate) fn overflow_series(&mut self, f: usize) -> Store {
        if let Some(s) = self.families[f].overflow {
            return s;
        }
        let labels = Labels::new(vec![(Arc::from(crate::error::OVERFLOW_LABEL), Arc::from("true"))]);
        let hash = self.key_hash(f, &labels);
        let store = self.allocate(f, labels, hash).unwrap_or_else(|_| self.fallback_store(f));
        self.families[f].overflow = Some(store);
        store
    }

    /// When storage is exhausted: the first series of the family (there is always one by
    /// the time storage can run out).
    fn fallback_store(&self, f: usize) -> Store {
        let first = self.records.iter().map(|(_, e)| e).chain(&self.tail).find(|s| s.family as usize == f);
        first.map(|s| s.store).expect("storage exhausted on an empty family")
    }

    /// The series of family `f` with these labels (values already checked against the limits).
    fn series_in(&mut self, f: usize, labels: Labels) -> Result<Registered, Error> {
        let hash = self.key_hash(f, &labels);
        let found = self.by_key.find(table_hash(hash), |&id| {
            self.key_hashes[id as usize] == hash && {
                let e = self.entry(id as usize);
                e.family as usize == f && e.labels == labels
            }
        });
        if let Some(&id) = found {
            return Ok(Registered { store: self.entry(id as usize).store, overflowed: false });
        }
        if self.families[f].series >= self.max_per_family || self.len() >= self.max_series {
            return Ok(Registered { store: self.overflow_series(f), overflowed: true });
        }
        let store = self.allocate(f, labels, hash)?;
        Ok(Registered { store, overflowed: false })
    }

    /// A new series of family `f` (`hash` is its key's, from `key_hash`).
    fn allocate(&mut self, f: usize, labels: Labels, hash: u32) -> Result<Store, Error> {
        let info = self.families[f].info.clone();
        let exhausted = || Error::StorageExhausted { name: info.name.to_string() };
        let (store, slot) = match info.kind {
            Kind::Counter => {
                let index = self.counters;
                let loc = CounterLoc::new(index).ok_or_else(exhausted)?;
                self.counters += 1;
                (Store::Counter { index: u32::try_from(index).map_err(|_| exhausted())?, loc }, index)
            }
            Kind::Gauge => {
                let index = self.gauges;
                let loc = GaugeStore::loc(index).ok_or_else(exhausted)?;
                self.gauges += 1;
                (Store::Gauge(loc), index)
            }
            Kind::Histogram => {
                let index = self.hist_precisions.len();
                let loc = HistLoc::new(index).ok_or_else(exhausted)?;
                self.hist_precisions.push(info.precision);
                self.hist_families.push(f as u32);
                let i = u32::try_from(index).map_err(|_| exhausted())?;
                let mapping = buckets::Mapping::new(info.precision, info.unit);
                (Store::Histogram { index: i, loc, mapping }, index)
            }
        };
        let slot = u32::try_from(slot).map_err(|_| exhausted())?;
        let id = self.len() as u32;
        let hashes = &self.key_hashes;
        self.by_key.insert_unique(table_hash(hash), id, |&id| table_hash(hashes[id as usize]));
        self.key_hashes.push(hash);
        self.tail.push(ViewEntry { labels, family: f as u32, store, slot });
        self.families[f].series += 1;
        self.dirty = true;
        Ok(store)
    }
}
