//! Retention on SQLite beyond the conformance suite: the file shrinks, the sketch watermark stays
//! right when every folded trace event has expired, and a database made before retention is
//! switched to incremental auto-vacuum.

use beacon_store::mobile::{PerfContext, PerfQuery, TraceBatch, percentiles};
use beacon_store::retention::{RetentionChannel, RetentionPolicy};
use beacon_store::security::CheckRecord;
use beacon_store::{EventRecord, Store, WriteOp};
use beacon_store_sqlite::SqliteStore;
use beacon_wire::mobile::{DeviceInfo, TraceName, TraceRecord};
use beacon_wire::sentry::StoredEvent;
use chrono::{DateTime, Days, NaiveDate, TimeZone, Utc};

fn day(n: u64) -> DateTime<Utc> {
    let d = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap() + Days::new(n);
    Utc.from_utc_datetime(&d.and_hms_opt(6, 0, 0).unwrap())
}

fn event(n: u32, at: DateTime<Utc>) -> WriteOp {
    let event = StoredEvent {
        event_id: format!("{n:032x}"),
        timestamp: at,
        // A few KiB per event, as real ones.
        message: Some(format!("{n} {}", "x".repeat(4000))),
        ..Default::default()
    };
    WriteOp::Event(Box::new(EventRecord {
        project_id: 1,
        received_at: at,
        event_json: serde_json::to_string(&event).unwrap(),
        event,
        group_hash: format!("{:032x}", n % 7),
        title: "t".into(),
        culprit: None,
        server_id: None,
    }))
}

fn traces(device: u32, n: usize, at: DateTime<Utc>) -> WriteOp {
    let info = DeviceInfo {
        version: Some("1.0.0".into()),
        ..Default::default()
    };
    WriteOp::Traces(Box::new(TraceBatch {
        received_at: at,
        context: PerfContext::new(info, Some(format!("{device:016x}{}", "0".repeat(48)))),
        events: (0..n)
            .map(|i| TraceRecord {
                name: TraceName::TeamSwitch,
                ts_us: at.timestamp_micros() + i as i64,
                dur_us: 1000 + i as i64,
            })
            .collect(),
    }))
}

async fn sketched(store: &SqliteStore, from: u64, to: u64) -> u64 {
    let q = PerfQuery {
        trace: TraceName::TeamSwitch,
        from: day(from).date_naive(),
        to: day(to).date_naive(),
        by: None,
        include_emulators: false,
        min_group_size: 1,
    };
    percentiles(store, &q)
        .await
        .unwrap()
        .groups
        .iter()
        .map(|g| g.count)
        .sum()
}

/// Copies the WAL into the file and truncates it, so the file's size is the database's.
fn file_size_after_checkpoint(path: &std::path::Path) -> u64 {
    let raw = rusqlite::Connection::open(path).unwrap();
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_shrinks_after_a_purge() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beacon.db");
    let store = SqliteStore::open(&path).unwrap();
    store
        .create_project("p", &"k".repeat(32), day(0))
        .await
        .unwrap();
    // 3,000 events of ~4 KiB on days 0-2, 100 on day 9.
    for d in 0..3u64 {
        for chunk in 0..4u32 {
            let ops: Vec<WriteOp> = (0..250u32)
                .map(|i| event(d as u32 * 1000 + chunk * 250 + i, day(d)))
                .collect();
            store.write_batch(ops.into()).await.unwrap();
        }
    }
    let young: Vec<WriteOp> = (0..100u32).map(|i| event(90_000 + i, day(9))).collect();
    store.write_batch(young.into()).await.unwrap();
    let before = file_size_after_checkpoint(&path);
    assert!(before > 10_000_000, "{before} bytes");
    let policy = RetentionPolicy {
        events_days: 3,
        ..RetentionPolicy::FOREVER
    };
    let run = store
        .apply_retention(&policy, day(9).date_naive(), false)
        .await
        .unwrap();
    let events = run
        .channels
        .iter()
        .find(|c| c.channel == RetentionChannel::Events)
        .unwrap();
    assert_eq!(events.removed, 3000);
    let after = file_size_after_checkpoint(&path);
    assert!(
        after < before / 4,
        "the file shrank from {before} to {after} bytes"
    );
    let status = store.retention_status().await.unwrap();
    let events = status
        .iter()
        .find(|s| s.channel == RetentionChannel::Events)
        .unwrap();
    assert_eq!(events.rows, 100);
    assert!(
        events.bytes > 100 * 4000 && events.bytes < after,
        "{events:?}"
    );
}

/// Every folded trace event expired and was removed; events written afterwards get rowids from 1
/// again. Had the watermark stayed at the old newest rowid, a crash would never fold them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_an_emptied_table_survive_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beacon.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        let ops: Vec<WriteOp> = (0..4).map(|d| traces(d, 50, day(0))).collect();
        store.write_batch(ops.into()).await.unwrap();
        store.compact_perf().await.unwrap();
        let policy = RetentionPolicy {
            trace_events_days: 2,
            ..RetentionPolicy::FOREVER
        };
        store
            .apply_retention(&policy, day(9).date_naive(), false)
            .await
            .unwrap();
        assert_eq!(store.count_trace_events().await.unwrap(), 0);
        store
            .write_batch(vec![traces(9, 30, day(9))].into())
            .await
            .unwrap();
        assert_eq!(sketched(&store, 0, 9).await, 230);
        // Dropped without folding the 30: as if the process had been killed.
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        sketched(&store, 9, 9).await,
        30,
        "rebuilt from trace_events"
    );
    assert_eq!(
        sketched(&store, 0, 9).await,
        230,
        "and the old ones not again"
    );
}

/// A database made before retention (auto-vacuum off) is rewritten once at open, keeping its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_database_is_switched_to_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beacon.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store
            .write_batch(
                vec![WriteOp::Check(CheckRecord {
                    received_at: day(1),
                    check: beacon_store::conformance::check(1, "5.37.0", 3),
                })]
                .into(),
            )
            .await
            .unwrap();
    }
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA auto_vacuum=NONE; VACUUM;")
        .unwrap();
    let mode: i64 = raw
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        mode, 0,
        "an older database, as a release before retention made it"
    );
    drop(raw);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.count_checks().await.unwrap(), 1);
    let raw = rusqlite::Connection::open(&path).unwrap();
    let mode: i64 = raw
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, 2, "incremental");
}
