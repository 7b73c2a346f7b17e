//! Channel 2 over HTTP: Sentry envelopes and store requests, every auth form and encoding, bad inputs.

use beacon_testkit::*;
use serde_json::{Value, json};
use std::io::Write;

fn event(n: u32, message: &str) -> Value {
    json!({"event_id": format!("{n:032x}"), "message": message, "level": "error", "platform": "python", "release": "1.0"})
}

fn envelope(items: &[(&str, Vec<u8>, bool)]) -> Vec<u8> {
    let mut out = b"{}\n".to_vec();
    for (ty, payload, with_length) in items {
        let header = if *with_length {
            json!({"type": ty, "length": payload.len()})
        } else {
            json!({"type": ty})
        };
        out.extend(header.to_string().as_bytes());
        out.push(b'\n');
        out.extend(payload);
        out.push(b'\n');
    }
    out
}

fn auth(key: &str) -> String {
    format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=beacon-test/1.0")
}

async fn post(
    c: &TestCollector,
    path: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
) -> reqwest::Response {
    let mut r = c.http.post(format!("{}{path}", c.url)).body(body);
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.send().await.unwrap()
}

async fn stored_events(c: &TestCollector) -> u64 {
    let issues: Value = c.get_admin("/issues?limit=1000").await;
    issues
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["count"].as_u64().unwrap())
        .sum()
}

/// Sets a DSN key's own rate limit through the admin API.
async fn set_rate_limit(c: &TestCollector, key: &str, per_minute: u32) {
    let r = c
        .http
        .patch(format!("{}/admin/v1/keys/{key}", c.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "rate_limit_per_minute": per_minute }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn every_auth_form_and_encoding_is_accepted() {
    let c = TestCollector::start().await;
    let p = c.create_project("app").await;
    let path = format!("/api/{}/envelope/", p.id);
    let one = |n: u32, with_length: bool| {
        envelope(&[(
            "event",
            event(n, &format!("boom {n}")).to_string().into_bytes(),
            with_length,
        )])
    };
    // Header, Authorization, query, envelope dsn.
    let r = post(&c, &path, one(1, true), &[("x-sentry-auth", auth(&p.key))]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["id"],
        format!("{:032x}", 1)
    );
    assert_eq!(
        post(&c, &path, one(2, false), &[("authorization", auth(&p.key))])
            .await
            .status(),
        200
    );
    assert_eq!(
        post(
            &c,
            &format!("{path}?sentry_key={}&sentry_version=7", p.key),
            one(3, true),
            &[]
        )
        .await
        .status(),
        200
    );
    let mut with_dsn =
        format!("{{\"dsn\":\"http://{}@127.0.0.1/{}\"}}\n", p.key, p.id).into_bytes();
    with_dsn.extend(&one(4, true)[3..]);
    assert_eq!(post(&c, &path, with_dsn, &[]).await.status(), 200);
    // Encodings; no content-type at all.
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(&one(5, true)).unwrap();
    let h = |enc: &str| {
        vec![
            ("x-sentry-auth", auth(&p.key)),
            ("content-encoding", enc.to_string()),
        ]
    };
    assert_eq!(
        post(&c, &path, gzip(&one(5, true)), &h("gzip"))
            .await
            .status(),
        200
    );
    assert_eq!(
        post(&c, &path, zlib.finish().unwrap(), &h("deflate"))
            .await
            .status(),
        200
    );
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        w.write_all(&one(6, true)).unwrap();
    }
    assert_eq!(post(&c, &path, br, &h("br")).await.status(), 200);
    assert_eq!(
        post(
            &c,
            &path,
            zstd::encode_all(&one(7, true)[..], 3).unwrap(),
            &h("zstd")
        )
        .await
        .status(),
        200
    );
    assert_eq!(post(&c, &path, one(8, true), &h("")).await.status(), 200);
    assert_eq!(
        post(&c, &path, one(9, true), &h("UTF-8")).await.status(),
        200
    );
    // The store endpoint.
    let r = post(
        &c,
        &format!("/api/{}/store/", p.id),
        event(10, "stored").to_string().into_bytes(),
        &[("x-sentry-auth", auth(&p.key))],
    )
    .await;
    assert_eq!(r.status(), 200);
    // A big (200 KiB) but valid event takes the blocking-pool path rather than the inline one.
    let big = event(11, &"y".repeat(200 << 10)).to_string().into_bytes();
    let r = post(
        &c,
        &format!("/api/{}/store/", p.id),
        big,
        &[("x-sentry-auth", auth(&p.key))],
    )
    .await;
    assert_eq!(r.status(), 200);
    // Events 1 to 11; 5 was sent twice (gzip and deflate) and counts once.
    assert_eq!(stored_events(&c).await, 11);
    c.stop().await;
}

#[tokio::test]
async fn auth_failures() {
    let c = TestCollector::start().await;
    let p = c.create_project("app").await;
    let other = c.create_project("other").await;
    let path = format!("/api/{}/envelope/", p.id);
    let body = || envelope(&[("event", event(1, "x").to_string().into_bytes(), true)]);
    type Case<'a> = (Vec<(&'a str, String)>, String, u16);
    let cases: Vec<Case<'_>> = vec![
        (vec![], path.clone(), 401),
        (
            vec![("x-sentry-auth", auth(&p.key))],
            format!("{path}?sentry_key={}", other.key),
            401,
        ),
        (
            vec![("x-sentry-auth", auth(&"f".repeat(32)))],
            path.clone(),
            403,
        ),
        (vec![("x-sentry-auth", auth(&other.key))], path.clone(), 403),
        (
            vec![("x-sentry-auth", "Basic abc".into())],
            path.clone(),
            401,
        ),
    ];
    for (headers, url, status) in cases {
        let r = post(&c, &url, body(), &headers).await;
        assert_eq!(r.status().as_u16(), status, "{headers:?} {url}");
        let e: Value = r.json().await.unwrap();
        assert!(e["message"].as_str().is_some());
    }
    // A disabled key is refused; enabled again, it works.
    let r = c
        .http
        .patch(format!("{}/admin/v1/keys/{}", c.url, p.key))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        post(&c, &path, body(), &[("x-sentry-auth", auth(&p.key))])
            .await
            .status(),
        403
    );
    c.http
        .patch(format!("{}/admin/v1/keys/{}", c.url, p.key))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        post(&c, &path, body(), &[("x-sentry-auth", auth(&p.key))])
            .await
            .status(),
        200
    );
    assert_eq!(
        stored_events(&c).await,
        1,
        "nothing from the refused requests was stored"
    );
    c.stop().await;
}

#[tokio::test]
async fn bad_inputs_get_their_status_and_nothing_else_is_lost() {
    let c = TestCollector::start().await;
    let p = c.create_project("app").await;
    let path = format!("/api/{}/envelope/", p.id);
    let h = vec![("x-sentry-auth", auth(&p.key))];
    let ev = |n: u32| event(n, &format!("good {n}")).to_string().into_bytes();
    // Malformed header, length past the end, a truncated item header.
    assert_eq!(
        post(&c, &path, b"{not json\n".to_vec(), &h).await.status(),
        400
    );
    assert_eq!(
        post(
            &c,
            &path,
            b"{}\n{\"type\":\"event\",\"length\":500}\n{}\n".to_vec(),
            &h
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        post(&c, &path, b"{}\n{\"type\":\"ev".to_vec(), &h)
            .await
            .status(),
        400
    );
    // Invalid JSON in one item of several: the others are kept.
    let mixed = envelope(&[
        ("event", ev(1), true),
        ("event", b"{broken".to_vec(), true),
        ("event", ev(2), false),
    ]);
    assert_eq!(post(&c, &path, mixed, &h).await.status(), 200);
    // Only an invalid event: 400.
    assert_eq!(
        post(
            &c,
            &path,
            envelope(&[("event", b"[1,2".to_vec(), true)]),
            &h
        )
        .await
        .status(),
        400
    );
    // An event over 1 MiB.
    let big = event(3, &"x".repeat(1 << 20)).to_string().into_bytes();
    let r = post(&c, &format!("/api/{}/store/", p.id), big, &h).await;
    assert_eq!(r.status(), 413);
    // A gzip bomb: 110 gzip members of 1 MiB of spaces each (~1 KiB apiece) expand past the
    // 100 MiB decoding limit; refused with 413 after decoding at most the limit.
    let member = gzip(&vec![b' '; 1 << 20]);
    let bomb: Vec<u8> = std::iter::repeat_n(member, 110).flatten().collect();
    assert!(bomb.len() < 1 << 20);
    let mut hz = h.clone();
    hz.push(("content-encoding", "gzip".into()));
    assert_eq!(post(&c, &path, bomb, &hz).await.status(), 413);
    // A body over 20 MiB compressed.
    assert_eq!(
        post(&c, &path, vec![b'{'; 21 << 20], &h).await.status(),
        413
    );
    // Unknown and not-stored item types are accepted.
    let extra = envelope(&[
        ("client_report", b"{}".to_vec(), true),
        ("mystery", b"??".to_vec(), false),
        ("event", ev(4), true),
    ]);
    assert_eq!(post(&c, &path, extra, &h).await.status(), 200);
    assert_eq!(
        stored_events(&c).await,
        3,
        "good events 1, 2 and 4 are stored, nothing else"
    );
    let dead = c.get_admin("/deadletters?channel=errors").await;
    assert_eq!(dead.as_array().unwrap().len(), 3, "{dead}");
    c.stop().await;
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429() {
    let c = TestCollector::start().await;
    let p = c.create_project("app").await;
    set_rate_limit(&c, &p.key, 3).await;
    let path = format!("/api/{}/store/", p.id);
    let h = vec![("x-sentry-auth", auth(&p.key))];
    for n in 0..3 {
        assert_eq!(
            post(&c, &path, event(n, "x").to_string().into_bytes(), &h)
                .await
                .status(),
            200
        );
    }
    let r = post(&c, &path, event(9, "x").to_string().into_bytes(), &h).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert!(
        r.headers()["x-sentry-rate-limits"]
            .to_str()
            .unwrap()
            .ends_with("::key")
    );
    // The next minute, it is accepted again.
    c.clock().advance(chrono::Duration::seconds(61));
    assert_eq!(
        post(&c, &path, event(9, "x").to_string().into_bytes(), &h)
            .await
            .status(),
        200
    );
    assert_eq!(stored_events(&c).await, 4);
    c.stop().await;
}

/// `beacon_items_total{channel="errors",outcome,reason}` as counted so far (0 when absent). The
/// recorder is shared by every collector of this test binary, so callers compare before and after.
async fn items_counted(c: &TestCollector, outcome: &str, reason: &str) -> u64 {
    let line =
        format!(r#"beacon_items_total{{channel="errors",outcome="{outcome}",reason="{reason}"}} "#);
    c.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix(&line))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Once a request is authenticated, every way out gives its items an outcome: a body that does not
/// decode is one rejected item, and a request over the key's rate has every item counted
/// `rate_limited` (events and other item types alike).
#[tokio::test]
async fn every_item_of_an_authenticated_request_gets_an_outcome() {
    let c = TestCollector::start().await;
    let p = c.create_project("app").await;
    let path = format!("/api/{}/envelope/", p.id);
    let h = vec![("x-sentry-auth", auth(&p.key))];

    let before = items_counted(&c, "rejected", "invalid_encoding").await;
    let mut corrupt = h.clone();
    corrupt.push(("content-encoding", "gzip".to_string()));
    let r = post(&c, &path, b"not gzip at all".to_vec(), &corrupt).await;
    assert_eq!(r.status(), 400);
    assert!(items_counted(&c, "rejected", "invalid_encoding").await > before);

    set_rate_limit(&c, &p.key, 1).await;
    let items = |a: u32, b: u32| {
        envelope(&[
            ("event", event(a, "x").to_string().into_bytes(), true),
            ("event", event(b, "y").to_string().into_bytes(), true),
            ("attachment", b"bytes".to_vec(), true),
        ])
    };
    let before = items_counted(&c, "rate_limited", "").await;
    // Two events do not fit a rate of one a minute: the whole request is refused.
    let r = post(&c, &path, items(1, 2), &h).await;
    assert_eq!(r.status(), 429);
    assert!(items_counted(&c, "rate_limited", "").await >= before + 3);
    c.stop().await;
}
