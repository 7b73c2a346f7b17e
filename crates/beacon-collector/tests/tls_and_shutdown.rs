//! TLS (HTTP/1.1 and HTTP/2 through rustls) and graceful shutdown.

use crate::util::*;
use beacon_testkit::*;

#[tokio::test]
async fn serves_https_over_http1_and_http2() {
    let tls = TestTls::new("beacon collector test ca");
    let c = TestCollector::builder().tls(&tls).start().await;
    assert!(c.url.starts_with("https://"));
    let port = c.running.as_ref().unwrap().local_addr().port();
    let root = tls.ca_certificate();
    let url = format!(
        "https://localhost:{port}/security?{}",
        mattermost_query(&server_id(1), "5.37.0", 3)
    );
    for (client, version) in [
        (
            reqwest::Client::builder()
                .add_root_certificate(root.clone())
                .http1_only()
                .build()
                .unwrap(),
            reqwest::Version::HTTP_11,
        ),
        (
            reqwest::Client::builder()
                .add_root_certificate(root.clone())
                .build()
                .unwrap(),
            reqwest::Version::HTTP_2,
        ),
    ] {
        let r = client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), version);
    }
    // Plain HTTP to the TLS port fails.
    let plain = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(!plain.is_ok_and(|r| r.status().is_success()));
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_accepted_requests() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    let c = TestCollector::start().await;
    let acked = Arc::new(AtomicU64::new(0));
    // 16 senders, each sending up to 200 checks one after another until the collector stops answering.
    let senders: Vec<_> = (0..16u32)
        .map(|t| {
            let (http, url, acked) = (c.http.clone(), c.url.clone(), acked.clone());
            tokio::spawn(async move {
                for i in 0..200u32 {
                    let q = mattermost_query(&server_id(t * 1000 + i), "5.37.0", 1);
                    match http.get(format!("{url}/security?{q}")).send().await {
                        Ok(r) if r.status() == 200 => {
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    // Shut down mid-stream, once traffic is flowing.
    for _ in 0..500 {
        if acked.load(Ordering::SeqCst) >= 100 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let dir = c.dir.path().to_path_buf();
    let TestCollector {
        running,
        dir: _keep,
        ..
    } = c;
    running.unwrap().shutdown().await.unwrap();
    for s in senders {
        s.await.unwrap();
    }
    let ok = acked.load(Ordering::SeqCst);
    assert!(ok >= 100, "traffic flowed before shutdown");
    // Reopen the file: every acknowledged check is there, and nothing else.
    use beacon_store::Store;
    let store = beacon_store_sqlite::SqliteStore::open(&dir.join("beacon.db")).unwrap();
    assert_eq!(store.count_checks().await.unwrap(), ok);
}
