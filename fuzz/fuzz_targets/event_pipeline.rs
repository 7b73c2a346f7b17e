//! One error event as the collector handles it: projection (`event::project`), scrubbing
//! (`beacon_scrub::scrub_event`), grouping (`grouping::group`) and serialising what is stored,
//! under a heap budget per input: more than 64 bytes per input byte + 1 MiB at any moment fails the
//! input (an abort at the allocation that crosses it), as does any panic; libFuzzer's `-timeout`
//! and `-rss_limit_mb` bound time and total memory. Also checked: scrubbing is idempotent and
//! grouping is deterministic. The dead-letter projection (`event::project_lenient`) goes through the
//! same steps, and gives the strict projection whenever that one succeeds.
//!
//! Two kinds of input: one starting with `{` is the event's JSON itself; any other is read with
//! `arbitrary` as a description of an event ([`Spec`]: fingerprint parts, exceptions, frames, each
//! with a repeat count), written out as JSON first. The second reaches events with many parts and
//! many frames from a few hundred bytes, where byte-level mutation of JSON rarely builds them; the
//! budget is then counted on the JSON's size, what the collector would have received.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use beacon_fuzz::{Counting, within_budget};
use beacon_wire::sentry::{event, grouping};
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: Counting = Counting;

const WHAT: &str = "event_pipeline";

#[derive(Debug, Arbitrary)]
enum Part {
    Default,
    DefaultSpaced,
    Text(String),
}

#[derive(Debug, Arbitrary)]
struct Frame {
    module: Option<String>,
    function: Option<String>,
    filename: Option<String>,
    lineno: Option<u32>,
    in_app: Option<bool>,
}

#[derive(Debug, Arbitrary)]
struct Exception {
    ty: Option<String>,
    value: Option<String>,
    module: Option<String>,
    frames: Vec<(Frame, u8)>,
}

#[derive(Debug, Arbitrary)]
struct Spec {
    fingerprint: Option<Vec<(Part, u8)>>,
    exceptions: Vec<(Exception, u8)>,
    message: Option<String>,
    level: Option<u8>,
    release: Option<String>,
    tags: Vec<(String, String)>,
    extra: Vec<(String, String)>,
    on_thread: bool,
}

fn repeat<T>(items: &[(T, u8)], f: impl Fn(&T) -> serde_json::Value) -> Vec<serde_json::Value> {
    items
        .iter()
        .flat_map(|(item, n)| std::iter::repeat_n(f(item), usize::from(*n) + 1))
        .collect()
}

/// The event JSON a [`Spec`] describes, in the shape SDKs send.
fn to_json(spec: &Spec) -> Vec<u8> {
    use serde_json::{Value, json};
    let frame = |f: &Frame| {
        json!({"module": f.module, "function": f.function, "filename": f.filename,
               "lineno": f.lineno, "in_app": f.in_app})
    };
    let exception = |x: &Exception| {
        json!({"type": x.ty, "value": x.value, "module": x.module,
               "stacktrace": {"frames": repeat(&x.frames, frame)}})
    };
    let mut e = serde_json::Map::new();
    if let Some(parts) = &spec.fingerprint {
        let part = |p: &Part| match p {
            Part::Default => json!("{{default}}"),
            Part::DefaultSpaced => json!("{{ default }}"),
            Part::Text(t) => json!(t),
        };
        e.insert("fingerprint".into(), Value::Array(repeat(parts, part)));
    }
    let exceptions = repeat(&spec.exceptions, exception);
    if spec.on_thread {
        e.insert("threads".into(), json!({"values": exceptions}));
        e.insert("exception".into(), json!([{"type": "E"}]));
    } else {
        e.insert("exception".into(), json!({"values": exceptions}));
    }
    let levels = [
        "fatal", "error", "warning", "info", "debug", "critical", "log", "nope",
    ];
    if let Some(l) = spec.level {
        e.insert("level".into(), json!(levels[usize::from(l) % levels.len()]));
    }
    e.insert("message".into(), json!(spec.message));
    e.insert("release".into(), json!(spec.release));
    e.insert("tags".into(), json!(spec.tags));
    let extra: serde_json::Map<String, Value> = spec
        .extra
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    e.insert("extra".into(), Value::Object(extra));
    serde_json::to_vec(&Value::Object(e)).expect("json")
}

fuzz_target!(|data: &[u8]| {
    let described;
    let data = if data.first() == Some(&b'{') {
        data
    } else {
        let Ok(spec) = Spec::arbitrary_take_rest(Unstructured::new(data)) else {
            return;
        };
        // Small events keep the runs fast; a few thousand parts and frames are plenty to show work
        // that grows faster than the event.
        let reps = |n: &u8| usize::from(*n) + 1;
        let frames: usize = spec
            .exceptions
            .iter()
            .map(|(x, n)| reps(n) * x.frames.iter().map(|(_, m)| reps(m)).sum::<usize>())
            .sum();
        let parts: usize = spec
            .fingerprint
            .iter()
            .flatten()
            .map(|(_, n)| reps(n))
            .sum();
        if frames > 2_000 || parts > 2_000 {
            return;
        }
        described = to_json(&spec);
        if described.len() > 64 << 10 {
            return;
        }
        &described[..]
    };
    let budget = 64 * data.len() + (1 << 20);
    within_budget(&WHAT, budget, || {
        let received = DateTime::<Utc>::from_timestamp(1_764_400_000, 0).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        let lenient = event::project_lenient(data, id, received);
        let Ok(mut e) = event::project(data, id, received) else {
            if let Some(mut dead) = lenient {
                beacon_scrub::scrub_event(&mut dead);
                std::hint::black_box(
                    serde_json::to_string(&dead).expect("a dead letter serialises"),
                );
            }
            return;
        };
        assert_eq!(
            lenient.as_ref(),
            Some(&e),
            "lenient and strict projections differ"
        );
        beacon_scrub::scrub_event(&mut e);
        let g = grouping::group(&e);
        let stored = serde_json::to_string(&e).expect("a stored event serialises");
        // Scrubbing a scrubbed event finds nothing more and changes nothing.
        let mut again = e.clone();
        let stats = beacon_scrub::scrub_event(&mut again);
        assert!(
            stats.is_empty(),
            "second scrub redacted more: {stats:?}\n{stored}"
        );
        assert_eq!(again, e, "second scrub changed the event");
        assert_eq!(grouping::group(&again), g, "grouping is not deterministic");
        assert_eq!(g.hash.len(), 32);
        std::hint::black_box(stored);
    });
});
