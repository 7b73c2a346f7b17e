//! SQLite keeps the sketch cells of recent trace events in memory and folds them in every few seconds;
//! after an unclean stop they are rebuilt from the raw events. Neither lost nor counted twice.

use beacon_store::Store;
use beacon_store::mobile::{PerfContext, PerfQuery, TraceBatch, percentiles};
use beacon_store::{WriteOp, WriteOutcome};
use beacon_store_sqlite::SqliteStore;
use beacon_wire::mobile::{DeviceInfo, TraceName, TraceRecord};
use chrono::{DateTime, Days, Utc};

fn batch(device: u32, n: usize, at: DateTime<Utc>) -> WriteOp {
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

async fn count(store: &SqliteStore, at: DateTime<Utc>) -> u64 {
    let q = PerfQuery {
        trace: TraceName::TeamSwitch,
        from: at.date_naive() - Days::new(1),
        to: at.date_naive(),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfolded_cells_are_rebuilt_after_an_unclean_stop_and_never_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("beacon.db");
    let at = Utc::now();
    {
        let store = SqliteStore::open(&path).unwrap();
        let ops: Vec<WriteOp> = (0..6).map(|d| batch(d, 50, at)).collect();
        assert_eq!(
            store.write_batch(ops.into()).await.unwrap(),
            vec![WriteOutcome::Accepted; 6]
        );
        assert_eq!(
            count(&store, at).await,
            300,
            "pending cells answer before any fold"
        );
        assert_eq!(store.compact_perf().await.unwrap(), 300);
        assert_eq!(count(&store, at).await, 300, "folded cells answer alike");
        store
            .write_batch(vec![batch(7, 40, at)].into())
            .await
            .unwrap();
        assert_eq!(count(&store, at).await, 340);
        // Dropped without folding the last 40: as if the process had been killed.
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        count(&store, at).await,
        340,
        "the 40 were rebuilt from trace_events, the 300 not again"
    );
    assert_eq!(
        store.compact_perf().await.unwrap(),
        0,
        "nothing pending after recovery"
    );
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        count(&store, at).await,
        340,
        "a clean reopen changes nothing"
    );
    assert_eq!(store.count_trace_events().await.unwrap(), 340);
}
