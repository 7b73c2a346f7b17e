//! The security channel's storage: its records, and the reports composed once for every backend
//! from the raw queries of [`Store`].
//!
//! k-anonymity lives here: [`fold`] merges every group with fewer than `min_group_size` distinct
//! servers into one group called `other` and says that it did.

use crate::{Result, Store, StoreError};
use beacon_wire::admin::{
    Bucket, BulletinExposure, Distributions, ExposureDay, ExposureReport, FleetDimension,
    FleetGroup, FleetReport, GroupCounts, GrowthDay, GrowthReport, ReleaseHealthReport,
    ReleaseHealthRow,
};
use beacon_wire::security::SecurityCheck;
use chrono::{DateTime, Days, NaiveDate, Utc};
use std::collections::{BTreeMap, HashMap};

pub mod rollup;

/// A validated check and when it was received. The UTC day of `received_at` is its de-duplication day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    pub received_at: DateTime<Utc>,
    pub check: SecurityCheck,
}

impl CheckRecord {
    pub fn day(&self) -> NaiveDate {
        self.received_at.date_naive()
    }
}

/// A server's latest check within a range of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSnapshot {
    pub server_id: String,
    pub day: NaiveDate,
    /// `X.Y.Z`.
    pub version: String,
    pub enterprise: bool,
    pub os: String,
    pub db: String,
    pub db_version: Option<String>,
    pub teams: Option<i64>,
    pub users: Option<i64>,
    pub activated_users: Option<i64>,
    pub unit_tests: bool,
}

impl ServerSnapshot {
    /// The snapshot of a check stored on `day`.
    pub fn of(day: NaiveDate, c: &SecurityCheck) -> Self {
        ServerSnapshot {
            server_id: c.server_id.clone(),
            day,
            version: c.version.to_string(),
            enterprise: c.enterprise,
            os: c.os.clone(),
            db: c.db.clone(),
            db_version: c.db_version.clone(),
            teams: c.teams,
            users: c.users,
            activated_users: c.activated_users,
            unit_tests: c.unit_tests,
        }
    }
}

/// Servers at their latest check within a range of days, counted per key of one fleet dimension and
/// size buckets: what the fleet and exposure reports are computed from. A backend computes the cells in
/// the database, so a report holds one row per distinct (key, buckets), never one per server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetCell {
    /// The servers' key in the dimension asked for ([`dimension_sql`]).
    pub key: String,
    /// The servers' users, activated users and teams as the representative of their size bucket
    /// ([`bucket_sql`]): [`bucket_of`] of it is the bucket.
    pub users_bucket: Option<i64>,
    pub activated_users_bucket: Option<i64>,
    pub teams_bucket: Option<i64>,
    /// How many servers, and their counts summed, each server's count capped at [`COUNT_CAP`].
    pub counts: GroupCounts,
}

/// The most one server's count adds to a sum. A count can be as large as `i64::MAX` on the wire; a
/// larger one than this is not a real installation, and the cap keeps sums over up to 9·10⁹ servers
/// from overflowing.
pub const COUNT_CAP: i64 = 1_000_000_000;

/// SQL (the same for every backend) of a count column capped at [`COUNT_CAP`]; NULL stays NULL.
pub fn capped_sql(column: &str) -> String {
    format!("CASE WHEN {column} > {COUNT_CAP} THEN {COUNT_CAP} ELSE {column} END")
}

/// SQL (the same for every backend) mapping a count column to the representative of its
/// [`bucket_of`] bucket: NULL, 0, 1, 11, 101, 1001 or 10001.
pub fn bucket_sql(column: &str) -> String {
    format!(
        "CASE WHEN {column} IS NULL THEN NULL WHEN {column} = 0 THEN 0 \
         WHEN {column} BETWEEN 1 AND 10 THEN 1 WHEN {column} BETWEEN 11 AND 100 THEN 11 \
         WHEN {column} BETWEEN 101 AND 1000 THEN 101 WHEN {column} BETWEEN 1001 AND 10000 THEN 1001 \
         ELSE 10001 END"
    )
}

/// SQL (the same for every backend, over the `checks` columns of the row aliased `c`) of a server's
/// key in a fleet dimension: its version, `enterprise` or `team`, its OS, its database, or its
/// database and its version (`postgres 15.2`, `postgres (unknown)`).
pub fn dimension_sql(by: FleetDimension) -> &'static str {
    match by {
        FleetDimension::Version => "c.version",
        FleetDimension::Edition => "CASE WHEN c.enterprise THEN 'enterprise' ELSE 'team' END",
        FleetDimension::Os => "c.os",
        FleetDimension::Db => "c.db",
        FleetDimension::Dbv => "c.db || ' ' || COALESCE(c.db_version, '(unknown)')",
    }
}

/// The select list and grouping of a [`FleetCell`] query over the latest check of each server
/// (aliased `c`): key, three buckets, servers and three capped sums, grouped by the first four.
/// A backend appends its `FROM … WHERE …` between the two halves it returns.
pub fn fleet_cells_sql(by: FleetDimension) -> (String, &'static str) {
    let select = format!(
        "SELECT {key}, {ub}, {ab}, {tb}, count(*), coalesce(sum({u}), 0), coalesce(sum({a}), 0), \
         coalesce(sum({t}), 0)",
        key = dimension_sql(by),
        ub = bucket_sql("c.users"),
        ab = bucket_sql("c.activated_users"),
        tb = bucket_sql("c.teams"),
        u = capped_sql("c.users"),
        a = capped_sql("c.activated_users"),
        t = capped_sql("c.teams"),
    );
    (select, "GROUP BY 1, 2, 3, 4")
}

/// The query of [`FleetCell`]s from the `latest_cells` rollup ([`rollup`]) over the rows matching
/// `filter` (the backend's `WHERE` text over its columns), given the backend's SQL for the text
/// [`rollup::NO_DB_VERSION`]: key, three buckets, servers and three sums, as [`fleet_cells_sql`].
pub fn latest_cells_sql(by: FleetDimension, filter: &str, no_db_version: &str) -> String {
    format!(
        "SELECT {key}, c.users_bucket, c.activated_users_bucket, c.teams_bucket, sum(c.servers), \
         sum(c.users), sum(c.activated_users), sum(c.teams) FROM (SELECT version, enterprise, os, \
         db, NULLIF(db_version, {no_db_version}) AS db_version, \
         NULLIF(users_bucket, {nb}) AS users_bucket, \
         NULLIF(activated_users_bucket, {nb}) AS activated_users_bucket, \
         NULLIF(teams_bucket, {nb}) AS teams_bucket, servers, users, activated_users, teams \
         FROM latest_cells WHERE {filter}) c GROUP BY 1, 2, 3, 4 HAVING sum(c.servers) > 0",
        key = dimension_sql(by),
        nb = rollup::NO_BUCKET,
    )
}

/// Servers on one version at their latest check within a range of days, and how many of them sent
/// error events in that range: a row of [`Store::release_health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseHealth {
    pub version: String,
    pub servers: u64,
    pub servers_with_errors: u64,
}

/// The select list and grouping of a [`ReleaseHealth`] query over the latest check of each server
/// (aliased `c`): version, servers, and servers with an `events` row of theirs whose `received_at`
/// is at least `lower` and below `upper` (SQL expressions of the backend: the first instant of
/// `from` and of the day after `to`). A backend appends its `FROM … WHERE …` between the two halves.
/// The `EXISTS` probe is one lookup in the index on `events (server_id, received_at)`.
pub fn release_health_sql(lower: &str, upper: &str) -> (String, &'static str) {
    (
        format!(
            "SELECT c.version, count(*), coalesce(sum(CASE WHEN EXISTS (SELECT 1 FROM events e \
             WHERE e.server_id = c.server_id AND e.received_at >= {lower} \
             AND e.received_at < {upper}) THEN 1 ELSE 0 END), 0)"
        ),
        "GROUP BY c.version",
    )
}

/// Release health from the rollups, for a range that ends at or after the newest stored day
/// ([`rollup`]): servers per version from `latest_cells`, and those of them with an error event in
/// the range, each erring server one lookup in `server_latest`: the cost follows the erring servers,
/// not the fleet. `filter(alias)` is the backend's `WHERE` text over a rollup table so aliased (the
/// range's days, test installs); `erring` its query of the server ids with an error event in the
/// range (repeats allowed). Rows: version, servers, servers with errors.
pub fn release_health_latest_sql(filter: &dyn Fn(&str) -> String, erring: &str) -> String {
    format!(
        "SELECT v.version, v.n, coalesce(w.n, 0) FROM \
         (SELECT c.version, sum(c.servers) AS n FROM latest_cells c WHERE {cells} \
          GROUP BY c.version HAVING sum(c.servers) > 0) v \
         LEFT JOIN (SELECT l.version, count(*) AS n FROM server_latest l WHERE l.server_id IN \
          ({erring}) AND {latest} GROUP BY l.version) w ON w.version = v.version",
        cells = filter("c"),
        latest = filter("l"),
    )
}

/// Servers and activated users per (day, version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDayCount {
    pub day: NaiveDate,
    pub version: String,
    pub servers: u64,
    pub activated_users: i64,
}

/// A count per day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    pub day: NaiveDate,
    pub count: u64,
}

/// The raw material of the growth report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrowthRaw {
    /// Distinct servers checking in, per day in the range.
    pub servers: Vec<DayCount>,
    /// Servers whose first check ever was that day, per day in the range.
    pub first_seen: Vec<DayCount>,
    /// Servers whose last check ever was that day, per day in `[last_from, to]`.
    pub last_seen: Vec<DayCount>,
}

/// The label of folded groups.
pub const OTHER: &str = "other";

/// How far back a bulletin's exposure timeline starts before its publication.
pub const TIMELINE_LEAD_DAYS: u64 = 7;
/// The longest range a report covers, to bound its cost.
pub const MAX_RANGE_DAYS: i64 = 3660;

/// Merges groups with fewer than `min_group_size` servers into `other`; returns the groups (largest
/// first, `other` last) and whether anything was folded.
pub fn fold(
    groups: impl IntoIterator<Item = (String, GroupCounts)>,
    min_group_size: u64,
) -> (Vec<FleetGroup>, bool) {
    let (kept, other) = fold_by(groups, min_group_size, |c| c.servers, add);
    let folded = other.is_some();
    let mut kept: Vec<FleetGroup> = kept
        .into_iter()
        .map(|(key, counts)| FleetGroup { key, counts })
        .collect();
    kept.sort_by(|a, b| {
        b.counts
            .servers
            .cmp(&a.counts.servers)
            .then_with(|| a.key.cmp(&b.key))
    });
    if let Some(counts) = other {
        kept.push(FleetGroup {
            key: OTHER.to_string(),
            counts,
        });
    }
    (kept, folded)
}

/// The k-anonymity rule of every server report, over any kind of counts: groups of no servers are
/// dropped, groups with fewer than `min_group_size` servers are summed into the `other` group
/// (returned apart, `Some` when anything was folded), the others are kept in the order given.
fn fold_by<T: Default>(
    groups: impl IntoIterator<Item = (String, T)>,
    min_group_size: u64,
    servers: impl Fn(&T) -> u64,
    add: impl Fn(&mut T, &T),
) -> (Vec<(String, T)>, Option<T>) {
    let mut kept = Vec::new();
    let mut other: Option<T> = None;
    for (key, counts) in groups {
        match servers(&counts) {
            0 => {}
            n if n < min_group_size => add(other.get_or_insert_with(T::default), &counts),
            _ => kept.push((key, counts)),
        }
    }
    (kept, other)
}

fn add(into: &mut GroupCounts, c: &GroupCounts) {
    into.servers = into.servers.saturating_add(c.servers);
    into.users = into.users.saturating_add(c.users);
    into.activated_users = into.activated_users.saturating_add(c.activated_users);
    into.teams = into.teams.saturating_add(c.teams);
}

/// The size buckets of a count: `0`, `1-10`, `11-100`, … `10001+`, and `unknown` when not reported.
pub fn bucket_of(v: Option<i64>) -> &'static str {
    match v {
        None => "unknown",
        Some(0) => "0",
        Some(1..=10) => "1-10",
        Some(11..=100) => "11-100",
        Some(101..=1000) => "101-1000",
        Some(1001..=10000) => "1001-10000",
        Some(_) => "10001+",
    }
}

const BUCKET_ORDER: [&str; 7] = [
    "0",
    "1-10",
    "11-100",
    "101-1000",
    "1001-10000",
    "10001+",
    "unknown",
];

/// Servers per size bucket from (a value in the bucket, servers) pairs; buckets below `k` folded.
fn distribution(values: impl Iterator<Item = (Option<i64>, u64)>, k: u64) -> (Vec<Bucket>, bool) {
    let mut counts: HashMap<&'static str, u64> = HashMap::new();
    for (v, servers) in values {
        *counts.entry(bucket_of(v)).or_default() += servers;
    }
    let mut out = Vec::new();
    let mut other = 0;
    for b in BUCKET_ORDER {
        match counts.get(b).copied().unwrap_or(0) {
            0 => {}
            n if n < k => other += n,
            n => out.push(Bucket {
                range: b.to_string(),
                servers: n,
            }),
        }
    }
    let folded = other > 0;
    if folded {
        out.push(Bucket {
            range: OTHER.to_string(),
            servers: other,
        });
    }
    (out, folded)
}

fn check_range(from: NaiveDate, to: NaiveDate) -> Result<()> {
    let days = (to - from).num_days();
    if days < 0 {
        return Err(StoreError::InvalidInput(format!(
            "range is empty: {from} is after {to}"
        )));
    }
    if days > MAX_RANGE_DAYS {
        return Err(StoreError::InvalidInput(format!(
            "range spans {days} days, at most {MAX_RANGE_DAYS} are allowed"
        )));
    }
    Ok(())
}

/// Distinct servers (each at its latest check in `[from, to]`) grouped by `by`, with sums and size
/// distributions.
pub async fn fleet(
    store: &dyn Store,
    from: NaiveDate,
    to: NaiveDate,
    by: FleetDimension,
    include_test: bool,
    min_group_size: u64,
) -> Result<FleetReport> {
    check_range(from, to)?;
    let cells = store.fleet_cells(from, to, by, include_test).await?;
    let mut total = GroupCounts::default();
    let mut groups: BTreeMap<String, GroupCounts> = BTreeMap::new();
    for cell in &cells {
        add(&mut total, &cell.counts);
        add(groups.entry(cell.key.clone()).or_default(), &cell.counts);
    }
    let (groups, folded) = fold(groups, min_group_size);
    let servers = |bucket: fn(&FleetCell) -> Option<i64>| {
        cells.iter().map(move |c| (bucket(c), c.counts.servers))
    };
    let (users, f1) = distribution(servers(|c| c.users_bucket), min_group_size);
    let (activated_users, f2) = distribution(servers(|c| c.activated_users_bucket), min_group_size);
    let (teams, f3) = distribution(servers(|c| c.teams_bucket), min_group_size);
    Ok(FleetReport {
        from,
        to,
        by,
        include_test,
        min_group_size,
        thresholded: folded || f1 || f2 || f3,
        total,
        groups,
        distributions: Distributions {
            users,
            activated_users,
            teams,
        },
    })
}

/// Distinct servers per day, new servers (first check ever that day) and gone servers (last check
/// ever `gone_after_days` before that day; only for days up to `today`, so silence is real).
pub async fn growth(
    store: &dyn Store,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
    gone_after_days: u32,
    today: NaiveDate,
) -> Result<GrowthReport> {
    check_range(from, to)?;
    let g = Days::new(gone_after_days.into());
    let last_from = from.checked_sub_days(g).ok_or_else(|| {
        StoreError::InvalidInput(format!(
            "{from} minus {gone_after_days} days is out of range"
        ))
    })?;
    let raw = store.growth_raw(from, to, last_from, include_test).await?;
    let index = |v: &[DayCount]| -> HashMap<NaiveDate, u64> {
        v.iter().map(|d| (d.day, d.count)).collect()
    };
    let (servers, first, last) = (
        index(&raw.servers),
        index(&raw.first_seen),
        index(&raw.last_seen),
    );
    let days = from
        .iter_days()
        .take_while(|d| *d <= to)
        .map(|day| GrowthDay {
            day,
            servers: servers.get(&day).copied().unwrap_or(0),
            new: first.get(&day).copied().unwrap_or(0),
            gone: if day <= today {
                day.checked_sub_days(g)
                    .and_then(|d| last.get(&d))
                    .copied()
                    .unwrap_or(0)
            } else {
                0
            },
        })
        .collect();
    Ok(GrowthReport {
        from,
        to,
        include_test,
        gone_after_days,
        thresholded: false,
        days,
    })
}

/// Exposure of the fleet to each bulletin (or one): servers and activated users whose latest check in
/// the window `[as_of - window_days + 1, as_of]` is on an affected version, and a per-day timeline
/// from a week before publication, which shows patch adoption.
pub async fn exposure(
    store: &dyn Store,
    bulletin: Option<&str>,
    window_days: u32,
    as_of: NaiveDate,
    include_test: bool,
    min_group_size: u64,
) -> Result<ExposureReport> {
    if window_days == 0 {
        return Err(StoreError::InvalidInput(
            "window_days must be at least 1".into(),
        ));
    }
    let bulletins = match bulletin {
        Some(id) => vec![
            store
                .bulletin(id)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("bulletin {id}")))?,
        ],
        None => store
            .bulletins()
            .await?
            .into_iter()
            .filter(|b| b.retracted_at.is_none())
            .collect(),
    };
    let window_from = as_of
        .checked_sub_days(Days::new(u64::from(window_days) - 1))
        .ok_or_else(|| {
            StoreError::InvalidInput(format!("{window_days} days before {as_of} is out of range"))
        })?;
    check_range(window_from, as_of)?;
    let latest = store
        .fleet_cells(window_from, as_of, FleetDimension::Version, include_test)
        .await?;
    let earliest_start = bulletins
        .iter()
        .map(|b| timeline_start(b.published_at.date_naive(), as_of))
        .min()
        .unwrap_or(as_of);
    let daily = if bulletins.is_empty() {
        Vec::new()
    } else {
        store
            .version_day_counts(earliest_start, as_of, include_test)
            .await?
    };
    let mut versions: HashMap<String, Option<semver::Version>> = HashMap::new();
    for v in latest
        .iter()
        .map(|c| &c.key)
        .chain(daily.iter().map(|d| &d.version))
    {
        versions
            .entry(v.clone())
            .or_insert_with(|| semver::Version::parse(v).ok());
    }
    let mut checked_per_day: BTreeMap<NaiveDate, u64> = BTreeMap::new();
    for d in &daily {
        *checked_per_day.entry(d.day).or_default() += d.servers;
    }
    let mut thresholded = false;
    let mut out = Vec::new();
    for b in bulletins {
        let Some(req) = b.requirement() else { continue };
        let affected = |v: &str| {
            versions
                .get(v)
                .and_then(|p| p.as_ref())
                .is_some_and(|p| req.matches(p))
        };
        let mut by_version: BTreeMap<String, GroupCounts> = BTreeMap::new();
        let mut total = GroupCounts::default();
        for cell in latest.iter().filter(|c| affected(&c.key)) {
            add(&mut total, &cell.counts);
            add(
                by_version.entry(cell.key.clone()).or_default(),
                &cell.counts,
            );
        }
        let (by_version, folded) = fold(by_version, min_group_size);
        thresholded |= folded;
        let start = timeline_start(b.published_at.date_naive(), as_of);
        let mut timeline: BTreeMap<NaiveDate, ExposureDay> = start
            .iter_days()
            .take_while(|d| *d <= as_of)
            .map(|day| {
                let servers_checked = checked_per_day.get(&day).copied().unwrap_or(0);
                (
                    day,
                    ExposureDay {
                        day,
                        servers_checked,
                        affected_servers: 0,
                        affected_activated_users: 0,
                    },
                )
            })
            .collect();
        for d in daily.iter().filter(|d| affected(&d.version)) {
            if let Some(t) = timeline.get_mut(&d.day) {
                t.affected_servers += d.servers;
                t.affected_activated_users += d.activated_users;
            }
        }
        out.push(BulletinExposure {
            id: b.id,
            title: b.title,
            severity: b.severity,
            affected: b.affected,
            published_at: b.published_at,
            retracted_at: b.retracted_at,
            servers: total.servers,
            activated_users: total.activated_users,
            by_version,
            timeline: timeline.into_values().collect(),
        });
    }
    Ok(ExposureReport {
        as_of,
        window_days,
        include_test,
        min_group_size,
        thresholded,
        servers_in_window: latest.iter().map(|c| c.counts.servers).sum(),
        bulletins: out,
    })
}

/// Release health: per server release, the servers whose latest check in `[from, to]` is on it and
/// how many of them sent error events received in `[from, to]`, with the error-free share. Releases
/// with fewer than `min_group_size` servers are folded into `other` (the rule of [`fold`]); rows
/// are newest release first (semver order), `other` last.
pub async fn release_health_report(
    store: &dyn Store,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
    min_group_size: u64,
) -> Result<ReleaseHealthReport> {
    check_range(from, to)?;
    let rows = store.release_health(from, to, include_test).await?;
    #[derive(Default)]
    struct Counts {
        servers: u64,
        with_errors: u64,
    }
    let add = |into: &mut Counts, c: &Counts| {
        into.servers = into.servers.saturating_add(c.servers);
        into.with_errors = into.with_errors.saturating_add(c.with_errors);
    };
    let mut total = Counts::default();
    let mut by_version: BTreeMap<String, Counts> = BTreeMap::new();
    for r in rows {
        let c = Counts {
            servers: r.servers,
            with_errors: r.servers_with_errors,
        };
        add(&mut total, &c);
        add(by_version.entry(r.version).or_default(), &c);
    }
    let (mut kept, other) = fold_by(by_version, min_group_size, |c| c.servers, add);
    // Newest first; a version that is not semver (none is stored) after the others, by text.
    kept.sort_by(|(a, _), (b, _)| {
        let (va, vb) = (
            semver::Version::parse(a).ok(),
            semver::Version::parse(b).ok(),
        );
        vb.cmp(&va).then_with(|| a.cmp(b))
    });
    let thresholded = other.is_some();
    let row = |version: String, c: Counts| ReleaseHealthRow {
        version,
        servers: c.servers,
        servers_with_errors: c.with_errors,
        error_free_share: 1.0 - c.with_errors as f64 / c.servers.max(1) as f64,
    };
    let mut releases: Vec<ReleaseHealthRow> = kept.into_iter().map(|(v, c)| row(v, c)).collect();
    if let Some(c) = other {
        releases.push(row(OTHER.to_string(), c));
    }
    Ok(ReleaseHealthReport {
        from,
        to,
        include_test,
        min_group_size,
        thresholded,
        servers: total.servers,
        servers_with_errors: total.with_errors,
        releases,
    })
}

/// A timeline starts a week before publication, but covers at most a year before `as_of`.
fn timeline_start(published: NaiveDate, as_of: NaiveDate) -> NaiveDate {
    let start = published
        .checked_sub_days(Days::new(TIMELINE_LEAD_DAYS))
        .unwrap_or(published);
    let earliest = as_of.checked_sub_days(Days::new(365)).unwrap_or(as_of);
    start.max(earliest).min(as_of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(servers: u64) -> GroupCounts {
        GroupCounts {
            servers,
            users: servers as i64 * 10,
            activated_users: servers as i64 * 5,
            teams: servers as i64,
        }
    }

    #[test]
    fn timelines_at_the_calendar_limits_do_not_panic() {
        let (min, max) = (NaiveDate::MIN, NaiveDate::MAX);
        assert_eq!(timeline_start(min, min), min);
        assert_eq!(timeline_start(min, max), max - Days::new(365));
        assert_eq!(
            timeline_start(max, max),
            max - Days::new(TIMELINE_LEAD_DAYS)
        );
    }

    #[test]
    fn folds_below_threshold_only() {
        let (groups, folded) = fold(
            vec![
                ("a".into(), g(5)),
                ("b".into(), g(4)),
                ("c".into(), g(1)),
                ("d".into(), g(9)),
            ],
            5,
        );
        assert!(folded);
        let keys: Vec<_> = groups
            .iter()
            .map(|g| (g.key.as_str(), g.counts.servers))
            .collect();
        assert_eq!(keys, vec![("d", 9), ("a", 5), ("other", 5)]);
        assert_eq!(groups[2].counts.users, 50);

        let (groups, folded) = fold(vec![("a".into(), g(5))], 5);
        assert!(!folded);
        assert_eq!(groups.len(), 1);
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_of(Some(0)), "0");
        assert_eq!(bucket_of(Some(10)), "1-10");
        assert_eq!(bucket_of(Some(11)), "11-100");
        assert_eq!(bucket_of(Some(10_001)), "10001+");
        assert_eq!(bucket_of(None), "unknown");
        let (b, folded) = distribution([(Some(1), 1), (Some(2), 1), (Some(50), 1)].into_iter(), 2);
        assert!(folded);
        assert_eq!(
            b,
            vec![
                Bucket {
                    range: "1-10".into(),
                    servers: 2
                },
                Bucket {
                    range: "other".into(),
                    servers: 1
                }
            ]
        );
    }
}
