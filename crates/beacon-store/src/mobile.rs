//! Mobile performance: what a backend stores for a trace batch, and the reports composed from
//! sketch rows.
//!
//! A batch is stored twice: its raw events (kept for drill-down) and, in the same transaction, one
//! sketch *delta* per [`CellKey`] it touched — a [`Cell`] per (day of the event, trace name, emulator
//! or not, dimension, value), for the ungrouped total and for each of the seven dimensions a report can
//! group by. Appending deltas never reads, so several collectors never contend; [`Store::compact_perf`]
//! merges the deltas into one row per key in the background. A report reads the rows of one trace
//! name and one dimension in its day range and merges them: its cost grows with days × values, never
//! with events.

pub mod sketch;

use crate::{Result, Store};
use beacon_wire::admin::{
    HistogramBucket, HistogramGroup, HistogramReport, PercentileReport, PerfGroup, Regression,
    RegressionReport,
};
use beacon_wire::mobile::{DeviceInfo, Dimension, TraceName, TraceRecord};
use chrono::{DateTime, NaiveDate, Utc};
use sha2::{Digest, Sha256};
use sketch::Cell;
use std::collections::{BTreeMap, HashMap};

/// The device of a batch, pseudonymised: `info.device_unique_id` is always `None`; `device_hash` is
/// the collector's keyed hash of it.
#[derive(Debug, Clone, PartialEq)]
pub struct PerfContext {
    /// A content hash of everything below: equal devices share one stored context row.
    pub id: i64,
    pub device_hash: Option<String>,
    pub info: DeviceInfo,
}

impl PerfContext {
    /// Drops any `device_unique_id` left in `info` (the caller should already have hashed it away).
    pub fn new(mut info: DeviceInfo, device_hash: Option<String>) -> Self {
        info.device_unique_id = None;
        let mut h = Sha256::new();
        h.update(serde_json::to_vec(&info).expect("device info serialises"));
        h.update([0]);
        h.update(device_hash.as_deref().unwrap_or("").as_bytes());
        let digest = h.finalize();
        let id = i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
        PerfContext {
            id,
            device_hash,
            info,
        }
    }

    /// The 64 bits of the device used by the distinct-device sample: from the device hash, or from the
    /// context when the app sent no id (then equal contexts count as one device).
    pub fn device_key(&self) -> u64 {
        self.device_hash
            .as_deref()
            .and_then(|h| h.get(..16))
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(self.id as u64)
    }

    pub fn emulator(&self) -> bool {
        self.info.is_emulator == Some(true)
    }
}

/// One request's accepted trace events.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceBatch {
    pub received_at: DateTime<Utc>,
    pub context: PerfContext,
    pub events: Vec<TraceRecord>,
}

/// The key of one sketch row.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub day: NaiveDate,
    pub trace: TraceName,
    pub emulator: bool,
    pub dim: Dimension,
    /// The dimension's value; `""` for [`Dimension::All`].
    pub value: String,
}

/// The UTC day of an event start in Unix microseconds.
pub fn day_of(ts_us: i64) -> NaiveDate {
    DateTime::from_timestamp_micros(ts_us)
        .map(|t| t.date_naive())
        .unwrap_or_default()
}

/// The sketch deltas of some batches: one cell per key they touch.
pub fn cells_of<'a>(batches: impl IntoIterator<Item = &'a TraceBatch>) -> HashMap<CellKey, Cell> {
    let mut acc = CellAccumulator::default();
    for b in batches {
        acc.add(b);
    }
    acc.into_cells()
}

type CellId = (NaiveDate, TraceName, bool, Dimension, u32);

/// Builds sketch cells batch by batch, cheaply: dimension values are interned (no string is cloned
/// twice), cells live in an arena, and each event's bin is computed once and counted in the eight
/// cells of its (day, trace) — the total and one per dimension.
#[derive(Default)]
pub struct CellAccumulator {
    values: foldhash::HashMap<String, u32>,
    names: Vec<String>,
    index: foldhash::HashMap<CellId, usize>,
    ids: Vec<CellId>,
    cells: Vec<Cell>,
}

impl CellAccumulator {
    fn cell(&mut self, id: CellId) -> usize {
        *self.index.entry(id).or_insert_with(|| {
            self.ids.push(id);
            self.cells.push(Cell::default());
            self.cells.len() - 1
        })
    }

    pub fn add(&mut self, batch: &TraceBatch) {
        let device = batch.context.device_key();
        let emulator = batch.context.emulator();
        let mut dims = [(Dimension::All, 0u32); 8];
        for (slot, &dim) in dims.iter_mut().zip(Dimension::ALL) {
            let value = batch.context.info.dimension(dim);
            let id = match self.values.get(&value) {
                Some(id) => *id,
                None => {
                    let id = self.names.len() as u32;
                    self.names.push(value.clone());
                    self.values.insert(value, id);
                    id
                }
            };
            *slot = (dim, id);
        }
        // The cells of each (day, trace) this batch touches, found once per batch.
        let mut groups: Vec<((NaiveDate, TraceName), [usize; 8])> = Vec::new();
        for e in &batch.events {
            let k = (day_of(e.ts_us), e.name);
            let cells = match groups.iter().find(|(gk, _)| *gk == k) {
                Some((_, cells)) => *cells,
                None => {
                    let cells = dims.map(|(dim, id)| self.cell((k.0, k.1, emulator, dim, id)));
                    for c in cells {
                        self.cells[c].devices.add(device);
                    }
                    groups.push((k, cells));
                    cells
                }
            };
            let v = e.dur_us.max(1) as u64;
            let key = sketch::key_of(v);
            for c in cells {
                self.cells[c].sketch.add_at(key, v);
            }
        }
    }

    /// Every cell with its key.
    pub fn iter(&self) -> impl Iterator<Item = (CellKey, &Cell)> + '_ {
        self.ids
            .iter()
            .zip(&self.cells)
            .map(|((day, trace, emulator, dim, id), cell)| {
                (
                    CellKey {
                        day: *day,
                        trace: *trace,
                        emulator: *emulator,
                        dim: *dim,
                        value: self.names[*id as usize].clone(),
                    },
                    cell,
                )
            })
    }

    pub fn into_cells(self) -> HashMap<CellKey, Cell> {
        let names = self.names;
        self.ids
            .into_iter()
            .zip(self.cells)
            .map(|((day, trace, emulator, dim, id), cell)| {
                let value = names[id as usize].clone();
                (
                    CellKey {
                        day,
                        trace,
                        emulator,
                        dim,
                        value,
                    },
                    cell,
                )
            })
            .collect()
    }
}

/// Which sketch rows a report reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfSelect {
    /// One trace name, or all of them.
    pub trace: Option<TraceName>,
    pub dim: Dimension,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub include_emulators: bool,
}

/// A stored sketch row (compacted or a delta not yet compacted).
#[derive(Debug, Clone, PartialEq)]
pub struct PerfRow {
    pub trace: TraceName,
    pub day: NaiveDate,
    pub value: String,
    pub cell: Cell,
}

/// A stored raw trace event with its context, for drill-down and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrace {
    pub ts_us: i64,
    pub trace: TraceName,
    pub dur_us: i64,
    pub context: PerfContext,
}

/// The percentiles every report shows.
const QUANTILES: [f64; 5] = [0.5, 0.75, 0.9, 0.95, 0.99];

/// Bucket edges of histograms, in milliseconds (a 1-2-5 series up to the 10-minute limit).
const HISTOGRAM_EDGES_MS: [f64; 19] = [
    0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1_000.0, 2_000.0, 5_000.0, 10_000.0,
    20_000.0, 50_000.0, 100_000.0, 200_000.0, 600_000.0,
];

/// The label of folded groups.
pub use crate::security::OTHER;

/// Merges rows into one cell per value, then folds values seen on fewer than `min_group_size`
/// devices into [`OTHER`]. Groups come largest first, `other` last.
fn merge_and_fold(rows: Vec<PerfRow>, min_group_size: u64) -> (Vec<(String, Cell)>, bool) {
    let mut by_value: HashMap<String, Cell> = HashMap::new();
    for row in rows {
        by_value.entry(row.value).or_default().merge(&row.cell);
    }
    let mut kept = Vec::new();
    let mut other = Cell::default();
    let mut folded = false;
    for (value, cell) in by_value {
        if cell.devices.at_least(min_group_size) {
            kept.push((value, cell));
        } else {
            folded = true;
            other.merge(&cell);
        }
    }
    kept.sort_by(|a, b| {
        b.1.sketch
            .count()
            .cmp(&a.1.sketch.count())
            .then_with(|| a.0.cmp(&b.0))
    });
    if folded {
        kept.push((OTHER.to_string(), other));
    }
    (kept, folded)
}

fn ms(us: f64) -> f64 {
    us.round() / 1000.0
}

fn group_of(value: String, cell: &Cell) -> PerfGroup {
    let q = QUANTILES.map(|q| ms(cell.sketch.quantile(q).unwrap_or(0.0)));
    PerfGroup {
        value,
        count: cell.sketch.count(),
        devices: cell.devices.distinct(),
        mean_ms: ms(cell.sketch.mean().unwrap_or(0.0)),
        p50_ms: q[0],
        p75_ms: q[1],
        p90_ms: q[2],
        p95_ms: q[3],
        p99_ms: q[4],
    }
}

/// What a percentile or histogram report asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerfQuery {
    pub trace: TraceName,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Option<Dimension>,
    pub include_emulators: bool,
    pub min_group_size: u64,
}

impl PerfQuery {
    fn select(&self) -> PerfSelect {
        PerfSelect {
            trace: Some(self.trace),
            dim: self.by.unwrap_or(Dimension::All),
            from: self.from,
            to: self.to,
            include_emulators: self.include_emulators,
        }
    }
}

/// Count, mean and p50 … p99 of a trace name, per group.
pub async fn percentiles(store: &dyn Store, q: &PerfQuery) -> Result<PercentileReport> {
    let rows = store.perf_rows(&q.select()).await?;
    let (groups, thresholded) = merge_and_fold(rows, q.min_group_size);
    Ok(PercentileReport {
        trace: q.trace.as_str().to_string(),
        from: q.from,
        to: q.to,
        by: q.by,
        include_emulators: q.include_emulators,
        relative_accuracy: sketch::RELATIVE_ACCURACY,
        min_group_size: q.min_group_size,
        thresholded,
        groups: groups
            .into_iter()
            .filter(|(_, c)| !c.sketch.is_empty())
            .map(|(v, c)| group_of(v, &c))
            .collect(),
    })
}

/// The percentiles of a trace name per UTC day of the range, over every group (`q.by` is not used):
/// one read of the sketch rows, merged per day. Days with no event are left out; a day seen on
/// fewer than `min_group_size` devices is left out too (k-anonymity, as for a group).
pub async fn percentiles_per_day(
    store: &dyn Store,
    q: &PerfQuery,
) -> Result<Vec<(NaiveDate, PerfGroup)>> {
    let all = PerfQuery {
        by: None,
        ..q.clone()
    };
    let rows = store.perf_rows(&all.select()).await?;
    let mut days: BTreeMap<NaiveDate, Vec<PerfRow>> = BTreeMap::new();
    for row in rows {
        days.entry(row.day).or_default().push(row);
    }
    Ok(days
        .into_iter()
        .filter_map(|(day, rows)| {
            let (groups, _) = merge_and_fold(rows, q.min_group_size);
            let (value, cell) = groups.into_iter().find(|(v, _)| v != OTHER)?;
            (!cell.sketch.is_empty()).then(|| (day, group_of(value, &cell)))
        })
        .collect())
}

/// Counts per duration bucket of a trace name, per group.
pub async fn histogram(store: &dyn Store, q: &PerfQuery) -> Result<HistogramReport> {
    let rows = store.perf_rows(&q.select()).await?;
    let (groups, thresholded) = merge_and_fold(rows, q.min_group_size);
    let groups = groups
        .into_iter()
        .filter(|(_, c)| !c.sketch.is_empty())
        .map(|(value, cell)| {
            let mut counts = [0u64; HISTOGRAM_EDGES_MS.len() - 1];
            for (lo, hi, n) in cell.sketch.bins() {
                // A sketch bin is narrower than 2 %: it goes where its geometric middle falls.
                let mid_ms = (lo * hi).sqrt() / 1000.0;
                let i = HISTOGRAM_EDGES_MS[1..]
                    .iter()
                    .position(|edge| mid_ms < *edge)
                    .unwrap_or(counts.len() - 1);
                counts[i] += n;
            }
            let first = counts.iter().position(|n| *n > 0).unwrap_or(0);
            let last = counts.iter().rposition(|n| *n > 0).unwrap_or(0);
            HistogramGroup {
                value,
                count: cell.sketch.count(),
                devices: cell.devices.distinct(),
                buckets: (first..=last)
                    .map(|i| HistogramBucket {
                        lower_ms: HISTOGRAM_EDGES_MS[i],
                        upper_ms: HISTOGRAM_EDGES_MS[i + 1],
                        count: counts[i],
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(HistogramReport {
        trace: q.trace.as_str().to_string(),
        from: q.from,
        to: q.to,
        by: q.by,
        include_emulators: q.include_emulators,
        min_group_size: q.min_group_size,
        thresholded,
        groups,
    })
}

/// What a regression report asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct RegressionQuery {
    pub trace: Option<TraceName>,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// A share: `0.1` flags a p75 or p95 more than 10 % slower.
    pub threshold: f64,
    pub min_samples: u64,
    pub include_emulators: bool,
    pub min_group_size: u64,
}

/// Orders app versions: semantic versions by precedence, before anything that is not one.
fn version_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (semver::Version::parse(a), semver::Version::parse(b)) {
        (Ok(x), Ok(y)) => x.cmp_precedence(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => std::cmp::Ordering::Less,
        (Err(_), Ok(_)) => std::cmp::Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

/// Per trace name, each app version against the previous one that has data in the range.
/// Versions seen on fewer than `min_group_size` devices, and `unknown`, take no part.
pub async fn regressions(store: &dyn Store, q: &RegressionQuery) -> Result<RegressionReport> {
    let rows = store
        .perf_rows(&PerfSelect {
            trace: q.trace,
            dim: Dimension::AppVersion,
            from: q.from,
            to: q.to,
            include_emulators: q.include_emulators,
        })
        .await?;
    let mut per: BTreeMap<TraceName, HashMap<String, Cell>> = BTreeMap::new();
    for row in rows {
        per.entry(row.trace)
            .or_default()
            .entry(row.value)
            .or_default()
            .merge(&row.cell);
    }
    let mut thresholded = false;
    let mut comparisons = Vec::new();
    for (trace, versions) in per {
        let mut versions: Vec<(String, Cell)> = versions
            .into_iter()
            .filter(|(v, c)| {
                let keep = v != "unknown" && c.devices.at_least(q.min_group_size);
                thresholded |= !keep && v != "unknown";
                keep
            })
            .collect();
        versions.sort_by(|a, b| version_order(&a.0, &b.0));
        for pair in versions.windows(2) {
            let (prev, cur) = (&pair[0], &pair[1]);
            let p = |c: &Cell, q: f64| ms(c.sketch.quantile(q).unwrap_or(0.0));
            let (p75, pp75, p95, pp95) = (
                p(&cur.1, 0.75),
                p(&prev.1, 0.75),
                p(&cur.1, 0.95),
                p(&prev.1, 0.95),
            );
            let change = |new: f64, old: f64| if old > 0.0 { (new - old) / old } else { 0.0 };
            let (samples, previous_samples) = (cur.1.sketch.count(), prev.1.sketch.count());
            let too_few = samples < q.min_samples || previous_samples < q.min_samples;
            let (c75, c95) = (change(p75, pp75), change(p95, pp95));
            comparisons.push(Regression {
                trace: trace.as_str().to_string(),
                version: cur.0.clone(),
                previous_version: prev.0.clone(),
                samples,
                previous_samples,
                p75_ms: p75,
                previous_p75_ms: pp75,
                p75_change: (c75 * 10_000.0).round() / 10_000.0,
                p95_ms: p95,
                previous_p95_ms: pp95,
                p95_change: (c95 * 10_000.0).round() / 10_000.0,
                flagged: !too_few && (c75 > q.threshold || c95 > q.threshold),
                too_few_samples: too_few,
            });
        }
    }
    Ok(RegressionReport {
        from: q.from,
        to: q.to,
        threshold: q.threshold,
        min_samples: q.min_samples,
        include_emulators: q.include_emulators,
        min_group_size: q.min_group_size,
        thresholded,
        comparisons,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(version: &str, device: &str, durs: &[i64]) -> TraceBatch {
        let info = DeviceInfo {
            version: Some(version.into()),
            model: Some("Pixel 7".into()),
            ..Default::default()
        };
        TraceBatch {
            received_at: DateTime::from_timestamp(1_764_400_000, 0).unwrap(),
            context: PerfContext::new(info, Some(format!("{device:0<64}"))),
            events: durs
                .iter()
                .map(|d| TraceRecord {
                    name: TraceName::TeamSwitch,
                    ts_us: 1_764_400_000_000_000,
                    dur_us: *d,
                })
                .collect(),
        }
    }

    #[test]
    fn cells_cover_every_dimension_once_per_event() {
        let a = batch("1.0.0", "a1", &[1000, 2000]);
        let b = batch("1.1.0", "b2", &[3000]);
        let cells = cells_of([&a, &b]);
        let total: u64 = cells
            .iter()
            .filter(|(k, _)| k.dim == Dimension::AppVersion)
            .map(|(_, c)| c.sketch.count())
            .sum();
        assert_eq!(total, 3);
        let all: Vec<_> = cells
            .iter()
            .filter(|(k, _)| k.dim == Dimension::All)
            .collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].1.sketch.count(), 3);
        assert_eq!(all[0].1.devices.distinct(), 2);
        // 8 dimensions; app_version splits in two.
        assert_eq!(cells.len(), 9);
    }

    #[test]
    fn the_context_id_ignores_the_raw_device_id() {
        let mut info = DeviceInfo {
            device_unique_id: Some("raw-id".into()),
            ..Default::default()
        };
        let a = PerfContext::new(info.clone(), Some("ab".repeat(32)));
        info.device_unique_id = None;
        let b = PerfContext::new(info, Some("ab".repeat(32)));
        assert_eq!(a, b);
        assert!(a.info.device_unique_id.is_none());
        assert_eq!(a.device_key(), 0xabab_abab_abab_abab);
    }

    #[test]
    fn versions_order_by_precedence() {
        let mut v = vec![
            "2.10.0",
            "unknown",
            "2.9.1",
            "2.1.0",
            "10.0.0-rc1",
            "10.0.0",
        ];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            v,
            vec![
                "2.1.0",
                "2.9.1",
                "2.10.0",
                "10.0.0-rc1",
                "10.0.0",
                "unknown"
            ]
        );
    }
}
