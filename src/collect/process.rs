//! Process and system resources, sampled through `sysinfo` by a [`Collector`] at the start of
//! a tick (at most once per [`Builder::min_interval`]).
//!
//! | metric | type | source |
//! |---|---|---|
//! | `process_cpu_seconds_total` | counter (kept in ms, exported in seconds) | user + system CPU time |
//! | `process_resident_memory_bytes` | gauge | resident set size |
//! | `process_virtual_memory_bytes` | gauge | virtual memory size |
//! | `process_threads` | gauge (Linux) | `num_threads` of `/proc/self/stat` |
//! | `process_open_fds` | gauge (Linux) | entries of `/proc/self/fd` |
//! | `process_max_fds` | gauge (Linux) | soft `RLIMIT_NOFILE`, read once |
//! | `process_start_time_seconds` | gauge | start time, Unix seconds (whole seconds) |
//! | `process_disk_read_bytes_total` | counter | bytes the process made the storage layer fetch |
//! | `process_disk_written_bytes_total` | counter | bytes the process sent to the storage layer |
//! | `system_cpu_usage_ratio` | gauge, 0..1 | all CPUs, busy share since the previous sample |
//! | `system_memory_total_bytes` | gauge | `MemTotal` |
//! | `system_memory_available_bytes` | gauge | `MemAvailable` |
//! | `system_network_receive_bytes_total{device}` | counter | per interface (Linux: `/proc/net/dev`) |
//! | `system_network_transmit_bytes_total{device}` | counter | per interface (Linux: `/proc/net/dev`) |
//! | `shardmetrics_process_collect_duration` | histogram (ns, exported in seconds) | this collector's own cost per sample |
//!
//! # Totals from the OS as counters
//! The OS reports CPU time, disk bytes and interface bytes as running totals. A [`Counter`] is
//! add-only, so each sample adds the increase since the previous sample (the first sample adds
//! the whole total, so the counter equals the OS total). The collector runs under the
//! aggregator mutex, one sample at a time, so the previous total it keeps is never raced. A
//! total that goes *down* (an interface re-created) is a reset: its new value is added, as
//! Prometheus' `rate()` would read a reset.
//!
//! # What is refreshed
//! Only what is exported: the process' CPU, memory and disk usage (no command line, environment,
//! user or task list), RAM (no swap), CPU usage (no frequency), and interface byte counters —
//! on Linux from one read of `/proc/net/dev`, since sysinfo's network refresh cannot be narrowed
//! to the byte counters and cost four times the rest of a sample (measured: 600 µs). On Linux,
//! `sysinfo` lists `/proc` to find the process (a directory read, no file per process) and keeps
//! the process' `stat` file open (it is counted in `process_open_fds`). The measured cost of a
//! sample is exported as `shardmetrics_process_collect_duration`.
//!
//! ```
//! # fn main() -> Result<(), shardmetrics::Error> {
//! use shardmetrics::{collect::process, Registry};
//! use std::time::Duration;
//!
//! let registry = Registry::builder().manual().build();
//! process::builder().min_interval(Duration::ZERO).register(&registry)?;
//! let snap = registry.flush();
//! assert!(snap.gauge("process_resident_memory_bytes", &[]).unwrap() > 0.0);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

use std::{
    collections::HashMap,
    fmt,
    time::{Duration, Instant},
};

#[cfg(not(target_os = "linux"))]
use sysinfo::Networks;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::{aggregator::Collector, Counter, Error, Family, Gauge, Histogram, Registry, Unit};

/// Default [`Builder::min_interval`]: one sample per second.
pub const DEFAULT_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Registers the default collector (process, system and network; at most one sample a second).
pub fn register(registry: &Registry) -> Result<(), Error> {
    builder().register(registry)
}

/// A [`Builder`] with the defaults.
pub fn builder() -> Builder {
    Builder::default()
}

/// Configures a [`ProcessCollector`].
#[derive(Debug, Clone)]
#[must_use = "a builder registers nothing until `register()` or `build()`"]
pub struct Builder {
    min_interval: Duration,
    system: bool,
    network: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Builder { min_interval: DEFAULT_MIN_INTERVAL, system: true, network: true }
    }
}

impl Builder {
    /// Samples at most once per `d`, however fast the registry ticks (default 1 s). A tick that
    /// comes up to 10 % early still samples, so a 1 s registry with a 1 s collector samples on
    /// every tick despite scheduling jitter. `Duration::ZERO` samples on every tick.
    ///
    /// `system_cpu_usage_ratio` is the busy share between two samples, so very short
    /// intervals (below ~200 ms) make it noisy.
    pub fn min_interval(mut self, d: Duration) -> Self {
        self.min_interval = d;
        self
    }

    /// Whether to export the `system_cpu_*` and `system_memory_*` gauges (default true).
    pub fn system(mut self, on: bool) -> Self {
        self.system = on;
        self
    }

    /// Whether to export the per-interface `system_network_*` counters (default true).
    pub fn network(mut self, on: bool) -> Self {
        self.network = on;
        self
    }

    /// Registers the metrics and adds the collector to `registry`.
    pub fn register(self, registry: &Registry) -> Result<(), Error> {
        let collector = self.build(registry)?;
        registry.add_collector(collector);
        Ok(())
    }

    /// Registers the metrics and returns the collector without adding it, for sampling by
    /// hand ([`ProcessCollector::sample`]) or adding it later.
    pub fn build(self, registry: &Registry) -> Result<ProcessCollector, Error> {
        let pid = sysinfo::get_current_pid().ok();
        let mut sys = System::new();
        let mut probe = None;
        if let Some(pid) = pid {
            sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), false, process_refresh());
            probe = sys.process(pid).map(|p| (p.open_files().is_some(), p.open_files_limit()));
        }
        let gauge = |name: &str, help: &str, unit: Unit| registry.gauge(name).help(help).unit(unit).build();
        let counter = |name: &str, help: &str, unit: Unit| registry.counter(name).help(help).unit(unit).build();

        let process = match pid {
            Some(pid) => {
                let max_fds = match probe.and_then(|(_, limit)| limit) {
                    Some(limit) => {
                        let g = gauge("process_max_fds", "Maximum number of open file descriptors", Unit::None)?;
                        g.set(limit as f64);
                        Some(g)
                    }
                    None => None,
                };
                Some(ProcessMetrics {
                    pid,
                    cpu: counter("process_cpu_seconds_total", "Total user and system CPU time", Unit::Milliseconds)?,
                    rss: gauge("process_resident_memory_bytes", "Resident memory size", Unit::Bytes)?,
                    vms: gauge("process_virtual_memory_bytes", "Virtual memory size", Unit::Bytes)?,
                    threads: if cfg!(target_os = "linux") {
                        Some(gauge("process_threads", "Number of OS threads in the process", Unit::None)?)
                    } else {
                        None
                    },
                    fds: match probe {
                        Some((true, _)) => {
                            Some(gauge("process_open_fds", "Number of open file descriptors", Unit::None)?)
                        }
                        _ => None,
                    },
                    _max_fds: max_fds,
                    start: gauge(
                        "process_start_time_seconds",
                        "Start time of the process since the Unix epoch",
                        Unit::Seconds,
                    )?,
                    disk_read: counter(
                        "process_disk_read_bytes_total",
                        "Bytes the process caused to be read from storage",
                        Unit::Bytes,
                    )?,
                    disk_written: counter(
                        "process_disk_written_bytes_total",
                        "Bytes the process caused to be written to storage",
                        Unit::Bytes,
                    )?,
                    prev_cpu_ms: 0,
                    prev_read: 0,
                    prev_written: 0,
                    stat_buf: String::new(),
                })
            }
            None => None,
        };
        let system = if self.system {
            Some(SystemMetrics {
                cpu: gauge("system_cpu_usage_ratio", "Busy share of all CPUs since the previous sample", Unit::Ratio)?,
                mem_total: gauge("system_memory_total_bytes", "Total physical memory", Unit::Bytes)?,
                mem_available: gauge("system_memory_available_bytes", "Memory available for new work", Unit::Bytes)?,
                cpu_primed: false,
            })
        } else {
            None
        };
        let network = if self.network {
            Some(NetworkMetrics {
                #[cfg(target_os = "linux")]
                buf: String::new(),
                #[cfg(not(target_os = "linux"))]
                networks: Networks::new(),
                rx: registry
                    .counter("system_network_receive_bytes_total")
                    .help("Bytes received per network interface")
                    .unit(Unit::Bytes)
                    .family(&["device"])?,
                tx: registry
                    .counter("system_network_transmit_bytes_total")
                    .help("Bytes transmitted per network interface")
                    .unit(Unit::Bytes)
                    .family(&["device"])?,
                prev: HashMap::new(),
            })
        } else {
            None
        };
        let cost = registry
            .histogram("shardmetrics_process_collect_duration")
            .help("Time one sample of the process/system collector took")
            .unit(Unit::Nanoseconds)
            .build()?;
        Ok(ProcessCollector {
            min_interval: self.min_interval,
            last: None,
            sys,
            process,
            system,
            network,
            cost,
            samples: 0,
        })
    }
}

fn process_refresh() -> ProcessRefreshKind {
    // `nothing()` still lists every process' tasks on Linux; we need none of them.
    ProcessRefreshKind::nothing().without_tasks().with_cpu().with_memory().with_disk_usage()
}

struct ProcessMetrics {
    pid: Pid,
    cpu: Counter,
    rss: Gauge,
    vms: Gauge,
    threads: Option<Gauge>,
    fds: Option<Gauge>,
    /// Set once at build time; kept so the handle's series is documented as ours.
    _max_fds: Option<Gauge>,
    start: Gauge,
    disk_read: Counter,
    disk_written: Counter,
    prev_cpu_ms: u64,
    prev_read: u64,
    prev_written: u64,
    stat_buf: String,
}

struct SystemMetrics {
    cpu: Gauge,
    mem_total: Gauge,
    mem_available: Gauge,
    /// CPU usage needs two samples; the first one only primes sysinfo's previous times.
    cpu_primed: bool,
}

struct NetworkMetrics {
    /// Linux: `/proc/net/dev` (one read for every interface's totals; sysinfo's refresh reads
    /// eight sysfs files per interface plus the addresses, ~4× the cost of the whole rest).
    #[cfg(target_os = "linux")]
    buf: String,
    #[cfg(not(target_os = "linux"))]
    networks: Networks,
    rx: Family<Counter>,
    tx: Family<Counter>,
    prev: HashMap<String, (u64, u64)>,
}

impl NetworkMetrics {
    fn add(&mut self, device: &str, rx_total: u64, tx_total: u64) {
        let prev = match self.prev.get_mut(device) {
            Some(p) => p,
            None => self.prev.entry(device.to_owned()).or_insert((0, 0)),
        };
        let (drx, dtx) = (advance(&mut prev.0, rx_total), advance(&mut prev.1, tx_total));
        self.rx.with(&[device]).add(drx);
        self.tx.with(&[device]).add(dtx);
    }

    #[cfg(target_os = "linux")]
    fn sample(&mut self) {
        use std::io::Read;
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let ok = std::fs::File::open("/proc/net/dev").and_then(|mut f| f.read_to_string(&mut buf)).is_ok();
        if ok {
            // Two header lines, then `  dev: rx_bytes rx_packets … (8 fields) tx_bytes …`.
            for line in buf.lines().skip(2) {
                let Some((dev, rest)) = line.split_once(':') else { continue };
                let mut f = rest.split_ascii_whitespace().map(|x| x.parse::<u64>().ok());
                let rx = f.next().flatten();
                let tx = f.nth(7).flatten();
                if let (Some(rx), Some(tx)) = (rx, tx) {
                    self.add(dev.trim(), rx, tx);
                }
            }
        }
        self.buf = buf;
    }

    #[cfg(not(target_os = "linux"))]
    fn sample(&mut self) {
        // `refresh(true)` also picks up new interfaces and forgets removed ones.
        self.networks.refresh(true);
        let totals: Vec<(String, u64, u64)> = self
            .networks
            .list()
            .iter()
            .map(|(d, data)| (d.clone(), data.total_received(), data.total_transmitted()))
            .collect();
        for (d, rx, tx) in totals {
            self.add(&d, rx, tx);
        }
    }
}

/// Samples process and system resources into metrics; see the module docs.
pub struct ProcessCollector {
    min_interval: Duration,
    last: Option<Instant>,
    sys: System,
    process: Option<ProcessMetrics>,
    system: Option<SystemMetrics>,
    network: Option<NetworkMetrics>,
    cost: Histogram,
    samples: u64,
}

impl fmt::Debug for ProcessCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessCollector")
            .field("min_interval", &self.min_interval)
            .field("samples", &self.samples)
            .finish_non_exhaustive()
    }
}

/// Adds the increase of an OS running total since `prev` (a decrease is a reset: the new
/// total is the increase) and remembers `total`.
fn advance(prev: &mut u64, total: u64) -> u64 {
    let d = if total >= *prev { total - *prev } else { total };
    *prev = total;
    d
}

impl ProcessCollector {
    /// Number of samples taken so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Takes one sample now, whatever the interval. Returns how long it took.
    pub fn sample(&mut self) -> Duration {
        let start = Instant::now();
        if let Some(p) = &mut self.process {
            self.sys.refresh_processes_specifics(ProcessesToUpdate::Some(&[p.pid]), false, process_refresh());
            if let Some(proc_) = self.sys.process(p.pid) {
                p.cpu.add(advance(&mut p.prev_cpu_ms, proc_.accumulated_cpu_time()));
                p.rss.set(proc_.memory() as f64);
                p.vms.set(proc_.virtual_memory() as f64);
                p.start.set(proc_.start_time() as f64);
                let disk = proc_.disk_usage();
                p.disk_read.add(advance(&mut p.prev_read, disk.total_read_bytes));
                p.disk_written.add(advance(&mut p.prev_written, disk.total_written_bytes));
                if let (Some(g), Some(n)) = (&p.fds, proc_.open_files()) {
                    g.set(n as f64);
                }
            }
            if let Some(g) = &p.threads {
                if let Some(n) = linux_threads(&mut p.stat_buf) {
                    g.set(n as f64);
                }
            }
        }
        if let Some(s) = &mut self.system {
            self.sys.refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
            self.sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            if s.cpu_primed {
                s.cpu.set(f64::from(self.sys.global_cpu_usage()) / 100.0);
            }
            s.cpu_primed = true;
            s.mem_total.set(self.sys.total_memory() as f64);
            s.mem_available.set(self.sys.available_memory() as f64);
        }
        if let Some(n) = &mut self.network {
            n.sample();
        }
        self.samples += 1;
        let took = start.elapsed();
        self.cost.record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        took
    }

    fn due(&self, now: Instant) -> bool {
        match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.min_interval - self.min_interval / 10,
        }
    }
}

impl Collector for ProcessCollector {
    fn collect(&mut self) {
        let now = Instant::now();
        if self.due(now) {
            self.last = Some(now);
            self.sample();
        }
    }
}

/// `num_threads` (field 20) of `/proc/self/stat`.
#[cfg(target_os = "linux")]
fn linux_threads(buf: &mut String) -> Option<u64> {
    use std::io::Read;
    buf.clear();
    std::fs::File::open("/proc/self/stat").ok()?.read_to_string(buf).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    let rest = &buf[buf.rfind(')')? + 1..];
    // Fields 3.. follow; field 20 is the 18th of them.
    rest.split_ascii_whitespace().nth(17)?.parse().ok()
}

#[cfg(not(target_os = "linux"))]
fn linux_threads(_buf: &mut String) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_adds_increases_and_treats_decreases_as_resets() {
        let mut prev = 0;
        assert_eq!(advance(&mut prev, 100), 100);
        assert_eq!(advance(&mut prev, 150), 50);
        assert_eq!(advance(&mut prev, 150), 0);
        assert_eq!(advance(&mut prev, 30), 30);
        assert_eq!(prev, 30);
    }

    #[test]
    fn sampling_is_rate_limited_with_slack() {
        let registry = Registry::builder().manual().build();
        let mut c = builder().min_interval(Duration::from_secs(1)).network(false).build(&registry).unwrap();
        let t0 = Instant::now();
        assert!(c.due(t0));
        c.last = Some(t0);
        assert!(!c.due(t0 + Duration::from_millis(500)));
        assert!(!c.due(t0 + Duration::from_millis(899)));
        assert!(c.due(t0 + Duration::from_millis(900)));
        assert!(c.due(t0 + Duration::from_secs(2)));
    }
}
