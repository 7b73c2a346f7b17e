//! Connection exhaustion, with raw sockets against an in-process collector with short limits: slow
//! heads, partial and endless bodies, `Expect: 100-continue` over the limit, idle keep-alive
//! connections, clients that never read, and the connection cap. Each test asserts an outcome
//! (closed, refused, answered); durations appear only as generous guards.

use crate::util::*;
use beacon_testkit::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Far longer than any limit below: a test that reaches it has found a connection held forever.
const GUARD: Duration = Duration::from_secs(60);

fn short_limits(c: &mut beacon_collector::Config) {
    c.server.header_read_timeout_secs = 1;
    c.server.body_timeout_secs = 1;
    c.server.idle_timeout_secs = 1;
    c.server.write_timeout_secs = 1;
}

fn addr(c: &TestCollector) -> std::net::SocketAddr {
    c.running.as_ref().unwrap().local_addr()
}

/// Everything the server sends until it closes the connection; `None` if it is still open at the
/// guard.
async fn read_to_close(s: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let r = tokio::time::timeout(GUARD, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    r.ok().map(|_| String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn a_slow_request_head_is_cut() {
    let c = TestCollector::start_with(short_limits).await;
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    // One header byte every 100 ms, never finishing the head.
    let dribble = tokio::spawn(async move {
        for _ in 0..600 {
            if wr.write_all(b"a").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let mut got = Vec::new();
    let closed = tokio::time::timeout(GUARD, rd.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "a head sent one byte at a time is cut");
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{got:?}");
    dribble.abort();
    c.stop().await;
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed() {
    let c = TestCollector::start_with(short_limits).await;
    for prefix in [&b""[..], b"PRI * HTTP/2.0\r\n"] {
        let mut s = TcpStream::connect(addr(&c)).await.unwrap();
        s.write_all(prefix).await.unwrap();
        assert!(read_to_close(&mut s).await.is_some());
    }
    c.stop().await;
}

/// `POST /admin/v1/bulletins`, whose handler reads the body, with a head that promises more.
fn bulletin_post(extra: &str) -> String {
    format!(
        "POST /admin/v1/bulletins HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\n{extra}\r\n"
    )
}

#[tokio::test]
async fn a_partial_body_is_cut_with_408() {
    let c = TestCollector::start_with(short_limits).await;
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    s.write_all(bulletin_post("Content-Length: 100\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(b"{\"id\":\"b1\"").await.unwrap();
    let got = read_to_close(&mut s)
        .await
        .expect("the connection is closed");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"error\":\"timeout\""), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    c.stop().await;
}

#[tokio::test]
async fn an_endless_chunk_is_cut_with_408() {
    let c = TestCollector::start_with(short_limits).await;
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    s.write_all(bulletin_post("Transfer-Encoding: chunked\r\n").as_bytes())
        .await
        .unwrap();
    s.write_all(b"ffffffffffffffff\r\n{\"id\":").await.unwrap();
    let got = read_to_close(&mut s)
        .await
        .expect("the connection is closed");
    assert!(got.starts_with("HTTP/1.1 408"), "{got}");
    assert!(got.contains("\"error\":\"timeout\""), "{got}");
    c.stop().await;
}

#[tokio::test]
async fn a_declared_length_over_the_limit_gets_413_without_100_continue() {
    let c = TestCollector::start_with(short_limits).await;
    let over_errors = beacon_collector::sentry::MAX_BODY_BYTES + 1024 * 1024;
    let over_mobile = beacon_wire::mobile::MAX_BODY_BYTES + 2;
    for (path, length, expect) in [
        ("/api/1/envelope/", over_errors, true),
        ("/api/1/store/", over_errors, true),
        ("/v1/mobile/metrics", over_mobile, true),
        ("/admin/v1/bulletins", 3 * 1024 * 1024, true),
        ("/api/1/envelope/", over_errors, false),
    ] {
        let mut s = TcpStream::connect(addr(&c)).await.unwrap();
        let expect = if expect {
            "Expect: 100-continue\r\n"
        } else {
            ""
        };
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {length}\r\n{expect}\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        // No byte of the body is sent: the answer comes from the head alone.
        let got = read_to_close(&mut s)
            .await
            .expect("the connection is closed");
        assert!(got.starts_with("HTTP/1.1 413"), "{path}: {got}");
        assert!(!got.contains("100 Continue"), "{path}: {got}");
        assert!(got.contains("\"error\":\"too_large\""), "{path}: {got}");
    }
    // Within the limit, the client is told to go on.
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    s.write_all(bulletin_post("Content-Length: 10\r\nExpect: 100-continue\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(GUARD, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100 Continue"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    c.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let c = TestCollector::start_with(|cfg| {
        short_limits(cfg);
        // The HTTP/1.1 head timer also runs between requests; the idle limit is tested below it.
        cfg.server.header_read_timeout_secs = 30;
    })
    .await;
    // HTTP/1.1: one request, then nothing.
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut s)
        .await
        .expect("the connection is closed");
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");

    // HTTP/2 (prior knowledge): one request, then nothing; a GOAWAY, then the close.
    let mut s = TcpStream::connect(addr(&c)).await.unwrap();
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // empty SETTINGS
    // HEADERS on stream 1, END_STREAM | END_HEADERS: GET, http, :path "/healthz" (HPACK literal).
    let mut block = vec![0x82, 0x86, 0x04, 8];
    block.extend_from_slice(b"/healthz");
    hello.extend_from_slice(&[0, 0, block.len() as u8, 1, 0x05, 0, 0, 0, 1]);
    hello.extend_from_slice(&block);
    s.write_all(&hello).await.unwrap();
    let mut frames = Vec::new();
    let closed = tokio::time::timeout(GUARD, async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            while buf.len() >= 9 {
                let len = u32::from_be_bytes([0, buf[0], buf[1], buf[2]]) as usize;
                if buf.len() < 9 + len {
                    break;
                }
                let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
                frames.push((buf[3], stream));
                buf.drain(..9 + len);
                if buf.is_empty() {
                    break;
                }
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection is closed");
    assert!(
        frames.contains(&(1, 1)),
        "a response HEADERS frame: {frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.0 == 7),
        "a GOAWAY frame: {frames:?}"
    );
    c.stop().await;
}

#[tokio::test]
async fn a_client_that_never_reads_is_cut() {
    let c = TestCollector::start_with(|cfg| {
        short_limits(cfg);
        cfg.server.idle_timeout_secs = 3600;
        cfg.server.header_read_timeout_secs = 3600;
    })
    .await;
    let s = TcpStream::connect(addr(&c)).await.unwrap();
    let (_rd, mut wr) = s.into_split();
    // Pipelined requests, no response ever read: the server's writes stall until it gives up, and
    // then this side's writes fail.
    let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(64);
    let cut = tokio::time::timeout(GUARD, async {
        loop {
            if wr.write_all(&request).await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(cut.is_ok(), "a client that never reads is cut");
    c.stop().await;
}

async fn get_status(a: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(a).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    read_to_close(&mut s).await
}

#[tokio::test]
async fn connections_over_the_cap_are_refused_and_served_again_once_gone() {
    let c = TestCollector::start_with(|cfg| {
        short_limits(cfg);
        cfg.server.header_read_timeout_secs = 3600;
        cfg.server.idle_timeout_secs = 3600;
        cfg.server.max_connections = 4;
    })
    .await;
    let a = addr(&c);
    // Four half-sent heads hold every slot.
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(a).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        holders.push(s);
    }
    // Connections are accepted in order, so the fifth is over the cap.
    let got = get_status(a, "/healthz").await.expect("refused and closed");
    assert!(got.starts_with("HTTP/1.1 503"), "{got}");
    assert!(got.contains("\"error\":\"unavailable\""), "{got}");
    assert!(got.to_ascii_lowercase().contains("retry-after: 5"), "{got}");
    assert!(
        got.to_ascii_lowercase().contains("connection: close"),
        "{got}"
    );
    // Once the holders are gone, new clients are served.
    drop(holders);
    let served = tokio::time::timeout(GUARD, async {
        loop {
            if let Some(got) = get_status(a, "/healthz").await
                && got.starts_with("HTTP/1.1 200")
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok(), "/healthz answers once the holders are gone");
    let r = c
        .security(&mattermost_query(&server_id(1), "5.37.0", 1))
        .await;
    assert_eq!(r.status(), 200);
    c.stop().await;
}

#[tokio::test]
async fn over_tls_connections_over_the_cap_get_503_after_the_handshake() {
    let tls = TestTls::new("beacon collector test ca");
    let c = TestCollector::builder()
        .tls(&tls)
        .config(|cfg| {
            short_limits(cfg);
            cfg.server.header_read_timeout_secs = 3600;
            cfg.server.max_connections = 1;
        })
        .start()
        .await;
    // A TCP connection that never starts its handshake holds the one slot.
    let holder = TcpStream::connect(addr(&c)).await.unwrap();
    let root = tls.ca_certificate();
    let url = format!("https://localhost:{}/healthz", addr(&c).port());
    for http1 in [true, false] {
        let mut b = reqwest::Client::builder().add_root_certificate(root.clone());
        if http1 {
            b = b.http1_only();
        }
        let r = b.build().unwrap().get(&url).send().await.unwrap();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "5");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unavailable");
    }
    drop(holder);
    let served = tokio::time::timeout(GUARD, async {
        let client = reqwest::Client::builder()
            .add_root_certificate(root)
            .build()
            .unwrap();
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(served.is_ok());
    c.stop().await;
}
