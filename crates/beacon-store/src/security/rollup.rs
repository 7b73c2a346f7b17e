//! The report rollups every backend keeps beside `checks`, in the transaction that changes `checks`,
//! so that no report reads the raw checks of a whole range:
//!
//! * `check_days`: per (day, version, test install), the servers that checked in that day and the sum of
//!   their capped activated users ([`capped`]) — the exposure timeline and the growth report's
//!   servers per day;
//! * `server_latest`: each server's latest check and the first day it was seen — release health over
//!   a range that ends at or after the newest stored day, and the growth report's new and gone
//!   servers;
//! * `latest_cells`: the servers of `server_latest` counted per day of their latest check and
//!   [`LatestCellKey`] (every fleet dimension and size bucket), with capped sums — the fleet and
//!   exposure reports over a range that ends at or after the newest stored day, whose cost is then
//!   the number of distinct cells, not of servers; last seen of the growth report;
//! * `first_days`: servers per first day seen and test install — new servers of the growth report.
//!
//! A backend writes checks, learns which were new (first of their day and server) and which replaced
//! a stored one (with the stored one's [`DayContribution`]), and applies the [`RollupDelta`] built
//! here, in key order (one lock order for every writer). Deletions (forget, retention) subtract what
//! they removed the same way. The conformance suite compares every report with one computed from
//! the raw checks.

use super::{COUNT_CAP, CheckRecord, ServerSnapshot};
use chrono::NaiveDate;
use std::collections::BTreeMap;

/// An activated-user count as the rollups and reports sum it: capped at [`COUNT_CAP`], `None` as 0
/// (the rule of [`super::capped_sql`] under `coalesce(sum(…), 0)`).
pub fn capped(v: Option<i64>) -> i64 {
    v.map_or(0, |v| v.min(COUNT_CAP))
}

/// What one stored check counts for in `check_days`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayContribution {
    pub day: NaiveDate,
    pub version: String,
    pub unit_tests: bool,
    pub activated_users: Option<i64>,
}

impl DayContribution {
    pub fn of(rec: &CheckRecord) -> Self {
        DayContribution {
            day: rec.day(),
            version: rec.check.version.to_string(),
            unit_tests: rec.check.unit_tests,
            activated_users: rec.check.activated_users,
        }
    }
}

/// The key of a `check_days` row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DayKey {
    pub day: NaiveDate,
    pub version: String,
    pub unit_tests: bool,
}

/// A change to one `check_days` row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayDelta {
    pub servers: i64,
    pub activated_users: i64,
}

/// A server's newest check among those written, and the earliest day among them: what
/// `server_latest` takes when `snapshot.day` is at least its stored day (and `first_day` when
/// earlier than its stored one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestCheck {
    pub first_day: NaiveDate,
    pub snapshot: ServerSnapshot,
}

/// A `latest_cells` row's key: the day of the servers' latest check and everything a fleet report
/// groups by, counts as their [`bucket_rep`] representative.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LatestCellKey {
    pub day: NaiveDate,
    pub version: String,
    pub enterprise: bool,
    pub os: String,
    pub db: String,
    pub db_version: Option<String>,
    pub users_bucket: Option<i64>,
    pub activated_users_bucket: Option<i64>,
    pub teams_bucket: Option<i64>,
    pub unit_tests: bool,
}

/// How `latest_cells` stores a missing database version and a missing count's bucket (its key
/// columns cannot be NULL): a control character no `dbv` may hold, and -1.
pub const NO_DB_VERSION: &str = "\u{1}";
pub const NO_BUCKET: i64 = -1;

impl LatestCellKey {
    pub fn stored_db_version(&self) -> &str {
        self.db_version.as_deref().unwrap_or(NO_DB_VERSION)
    }

    pub fn stored_bucket(b: Option<i64>) -> i64 {
        b.unwrap_or(NO_BUCKET)
    }

    pub fn of(s: &ServerSnapshot) -> Self {
        LatestCellKey {
            day: s.day,
            version: s.version.clone(),
            enterprise: s.enterprise,
            os: s.os.clone(),
            db: s.db.clone(),
            db_version: s.db_version.clone(),
            users_bucket: bucket_rep(s.users),
            activated_users_bucket: bucket_rep(s.activated_users),
            teams_bucket: bucket_rep(s.teams),
            unit_tests: s.unit_tests,
        }
    }
}

/// A count's size bucket as the representative [`super::bucket_sql`] maps it to (the same rule).
pub fn bucket_rep(v: Option<i64>) -> Option<i64> {
    v.map(|v| match v {
        0 => 0,
        1..=10 => 1,
        11..=100 => 11,
        101..=1000 => 101,
        1001..=10000 => 1001,
        _ => 10001,
    })
}

/// A change to one `latest_cells` row: servers and capped sums of users, activated users, teams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CellDelta {
    pub servers: i64,
    pub users: i64,
    pub activated_users: i64,
    pub teams: i64,
}

/// The `latest_cells` and `first_days` changes of servers whose `server_latest` row changed, in key
/// order. `first_days` counts servers per first day seen and test install (of their latest check).
#[derive(Debug, Default)]
pub struct CellMoves {
    cells: BTreeMap<LatestCellKey, CellDelta>,
    firsts: BTreeMap<(NaiveDate, bool), i64>,
}

impl CellMoves {
    /// A server's row went from `old` (none: a new server) to `new`, each (first day, latest check).
    pub fn moved(
        &mut self,
        old: Option<(NaiveDate, &ServerSnapshot)>,
        new: (NaiveDate, &ServerSnapshot),
    ) {
        if let Some(old) = old {
            self.count(old, -1);
        }
        self.count(new, 1);
    }

    /// A server left `server_latest`.
    pub fn removed(&mut self, old: (NaiveDate, &ServerSnapshot)) {
        self.count(old, -1);
    }

    fn count(&mut self, (first, s): (NaiveDate, &ServerSnapshot), sign: i64) {
        let d = self.cells.entry(LatestCellKey::of(s)).or_default();
        d.servers += sign;
        d.users += sign * capped(s.users);
        d.activated_users += sign * capped(s.activated_users);
        d.teams += sign * capped(s.teams);
        *self.firsts.entry((first, s.unit_tests)).or_default() += sign;
    }

    /// The `latest_cells` changes that change something, in key order.
    pub fn changes(&self) -> impl Iterator<Item = (&LatestCellKey, &CellDelta)> {
        self.cells
            .iter()
            .filter(|(_, d)| **d != CellDelta::default())
    }

    /// The `first_days` changes ((day, test install), servers) that change something, in key order.
    pub fn first_changes(&self) -> impl Iterator<Item = (&(NaiveDate, bool), &i64)> {
        self.firsts.iter().filter(|(_, n)| **n != 0)
    }
}

/// What `server_latest` holds for a server after `l` is applied to its row `old`: the newer check
/// (of one day, the one applied), and the earlier first day.
pub fn merged(
    old: Option<&(NaiveDate, ServerSnapshot)>,
    l: &LatestCheck,
) -> (NaiveDate, ServerSnapshot) {
    match old {
        Some((first, s)) if s.day > l.snapshot.day => ((*first).min(l.first_day), s.clone()),
        Some((first, _)) => ((*first).min(l.first_day), l.snapshot.clone()),
        None => (l.first_day, l.snapshot.clone()),
    }
}

/// The changes one write or deletion makes to the rollups, in key order.
#[derive(Debug, Default)]
pub struct RollupDelta {
    days: BTreeMap<DayKey, DayDelta>,
    latest: BTreeMap<String, LatestCheck>,
}

impl RollupDelta {
    /// A check stored as the first of its day and server.
    pub fn inserted(&mut self, rec: &CheckRecord) {
        self.count(&DayContribution::of(rec), 1);
        self.seen(rec);
    }

    /// A check that replaced the stored check `old` of its day and server.
    pub fn replaced(&mut self, old: &DayContribution, rec: &CheckRecord) {
        self.count(old, -1);
        self.count(&DayContribution::of(rec), 1);
        self.seen(rec);
    }

    /// A stored check removed (the server's `server_latest` row is the deleter's business).
    pub fn removed(&mut self, old: &DayContribution) {
        self.count(old, -1);
    }

    fn count(&mut self, c: &DayContribution, sign: i64) {
        let d = self
            .days
            .entry(DayKey {
                day: c.day,
                version: c.version.clone(),
                unit_tests: c.unit_tests,
            })
            .or_default();
        d.servers += sign;
        d.activated_users += sign * capped(c.activated_users);
    }

    /// Checks are given in the order they were written: of two on one day, the later wins, as it
    /// does in `checks`.
    fn seen(&mut self, rec: &CheckRecord) {
        let day = rec.day();
        let c = &rec.check;
        let snapshot = || ServerSnapshot::of(day, c);
        match self.latest.get_mut(&c.server_id) {
            Some(l) => {
                l.first_day = l.first_day.min(day);
                if day >= l.snapshot.day {
                    l.snapshot = snapshot();
                }
            }
            None => {
                self.latest.insert(
                    c.server_id.clone(),
                    LatestCheck {
                        first_day: day,
                        snapshot: snapshot(),
                    },
                );
            }
        }
    }

    /// The `check_days` changes that change something, in key order.
    pub fn days(&self) -> impl Iterator<Item = (&DayKey, &DayDelta)> {
        self.days.iter().filter(|(_, d)| **d != DayDelta::default())
    }

    /// The `server_latest` upserts, in server id order.
    pub fn latest(&self) -> impl Iterator<Item = &LatestCheck> {
        self.latest.values()
    }

    pub fn is_empty(&self) -> bool {
        self.days().next().is_none() && self.latest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_wire::security::SecurityCheck;
    use chrono::{TimeZone, Utc};

    fn rec(id: &str, day: u32, version: &str, activated: Option<i64>, ut: bool) -> CheckRecord {
        CheckRecord {
            received_at: Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap(),
            check: SecurityCheck {
                server_id: id.into(),
                version: version.parse().unwrap(),
                build: None,
                enterprise: false,
                os: "linux".into(),
                db: "postgres".into(),
                db_version: None,
                teams: None,
                users: None,
                activated_users: activated,
                unit_tests: ut,
                last_check_ms: None,
            },
        }
    }

    fn key(day: u32, version: &str, ut: bool) -> DayKey {
        DayKey {
            day: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            version: version.into(),
            unit_tests: ut,
        }
    }

    #[test]
    fn a_replaced_check_moves_its_count_and_the_newest_day_wins() {
        let mut d = RollupDelta::default();
        let first = rec("a", 2, "9.0.0", Some(5), false);
        d.inserted(&first);
        d.replaced(
            &DayContribution::of(&first),
            &rec("a", 2, "9.1.0", Some(2_000_000_000), false),
        );
        d.inserted(&rec("a", 1, "8.0.0", None, true));
        let days: Vec<_> = d.days().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(
            days,
            vec![
                (
                    key(1, "8.0.0", true),
                    DayDelta {
                        servers: 1,
                        activated_users: 0
                    }
                ),
                (
                    key(2, "9.1.0", false),
                    DayDelta {
                        servers: 1,
                        activated_users: COUNT_CAP
                    }
                ),
            ],
            "9.0.0 went to zero and is left out; the count is capped"
        );
        let latest: Vec<_> = d.latest().collect();
        assert_eq!(latest.len(), 1);
        assert_eq!(
            latest[0].snapshot.version, "9.1.0",
            "day 2 is newer than day 1"
        );
        assert_eq!(latest[0].first_day, key(1, "", false).day);
    }

    #[test]
    fn a_server_moving_to_a_new_day_moves_its_cell() {
        let mut d = RollupDelta::default();
        d.inserted(&rec("a", 3, "1.2.3", Some(7), false));
        let l = d.latest().next().unwrap().clone();
        let mut old = l.snapshot.clone();
        old.day = key(2, "", false).day;
        old.version = "1.2.2".into();
        // A newer check replaces the row; an older one keeps it (but not its first day).
        let (first, new) = merged(Some(&(key(1, "", false).day, old.clone())), &l);
        assert_eq!((first, &new), (key(1, "", false).day, &l.snapshot));
        let mut late = l.clone();
        late.snapshot.day = key(1, "", false).day;
        late.first_day = late.snapshot.day;
        let (_, kept) = merged(Some(&(key(2, "", false).day, old.clone())), &late);
        assert_eq!(kept, old);
        let mut cells = CellMoves::default();
        cells.moved(Some((first, &old)), (first, &new));
        cells.moved(Some((first, &new)), (first, &new)); // no change: nothing to write
        assert_eq!(
            cells.first_changes().count(),
            0,
            "the first day did not change"
        );
        let changes: Vec<_> = cells
            .changes()
            .map(|(k, d)| (k.day, k.version.clone(), *d))
            .collect();
        let one = CellDelta {
            servers: 1,
            users: 0,
            activated_users: 7,
            teams: 0,
        };
        let minus = CellDelta {
            servers: -1,
            users: 0,
            activated_users: -7,
            teams: 0,
        };
        assert_eq!(
            changes,
            vec![
                (old.day, "1.2.2".into(), minus),
                (new.day, "1.2.3".into(), one)
            ]
        );
        assert_eq!(bucket_rep(Some(7)), Some(1));
        assert_eq!(bucket_rep(Some(10001)), Some(10001));
        assert_eq!(bucket_rep(None), None);
    }

    #[test]
    fn a_removal_subtracts() {
        let mut d = RollupDelta::default();
        d.removed(&DayContribution::of(&rec("a", 3, "1.2.3", Some(7), false)));
        let days: Vec<_> = d.days().map(|(k, v)| (k.clone(), *v)).collect();
        assert_eq!(
            days,
            vec![(
                key(3, "1.2.3", false),
                DayDelta {
                    servers: -1,
                    activated_users: -7
                }
            )]
        );
        assert!(d.latest().next().is_none());
        assert!(!d.is_empty());
    }
}
