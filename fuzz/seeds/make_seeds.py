#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/ (real formats, taken from the
crates' tests). `scripts/fuzz --seed` runs it; the committed corpus is these seeds plus what the fuzzer
found, minimized with `cargo fuzz cmin`."""
import gzip, hashlib, json, os, struct, subprocess, sys, zlib

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "corpus")

def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)

# --- security_query: what a Mattermost server (and the agent) sends.
sid = "abcdefghijklmnopqrstuvwxyz"
for q in [
    f"auc=37&b=5.37.0.1234&be=true&db=postgres&id={sid}&os=linux&tc=3&uc=42&ut=0",
    f"auc=0&b=9.11.2&be=false&db=mysql&id={sid}&os=darwin&tc=0&uc=0&ut=1",
    f"auc=1&b=5.37.0&be=false&db=postgres&dbv=14.5+%28Debian%29&id={sid}&lc=1764400000000&os=linux&tc=1&uc=1&ut=0",
    f"b=10.0.0.build_7-x&be=true&db=postgres&id={sid}&os=windows&extra=1&x%20y=%zz",
    f"id={sid}&b=1.2.3&be=true&db=postgres&os=freebsd&tc=9223372036854775807",
]:
    put("security_query", q)

# --- envelope and event_pipeline: Sentry events as SDKs send them.
python_event = {
    "event_id": "0123456789abcdef0123456789abcdef",
    "timestamp": "2026-01-02T03:04:05Z",
    "platform": "python", "level": "error",
    "release": "billing@2.4.1", "environment": "production",
    "server_name": "web-1",
    "logentry": {"message": "payment failed for %s", "formatted": "payment failed for alice@example.com"},
    "exception": {"values": [{
        "type": "OperationalError",
        "value": "could not connect to server at 10.20.30.40:5432 via postgres://billing:Sup3rS3cret@db.internal/billing",
        "module": "psycopg2",
        "mechanism": {"type": "logging", "handled": True},
        "stacktrace": {"frames": [
            {"module": "django.core.handlers.base", "function": "_get_response",
             "filename": "/usr/lib/python3.11/site-packages/django/core/handlers/base.py", "lineno": 197, "in_app": False},
            {"module": "billing.views", "function": "charge",
             "abs_path": "/home/alice/projects/billing/billing/views.py", "lineno": 42, "in_app": True},
        ]},
    }]},
    "tags": {"api_key": "sk_live_51HxYzQ2eZvKYlo2C", "browser": "Firefox 128.0", "url": "https://x.example.com/?access_token=tok_9f8e"},
    "contexts": {"os": {"name": "Linux", "version": "6.1.0"}, "runtime": {"name": "CPython", "version": "3.11.4"}},
    "extra": {"customer_email": "alice@example.com", "order_id": 1234, "items": ["sku-1", "sku-2"], "duration_ms": 1532.5,
              "headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"}},
    "fingerprint": ["{{ default }}", "gateway-10.20.30.40"],
    "user": {"id": "42", "email": "alice@example.com", "ip_address": "203.0.113.7"},
    "breadcrumbs": {"values": [{"message": "GET /charge", "category": "http"}]},
}
js_event = {
    "event_id": "fedcba98-7654-3210-fedc-ba9876543210",
    "timestamp": 1764400000.25, "platform": "javascript", "level": "warning",
    "message": "TypeError in checkout",
    "exception": {"values": [{"type": "TypeError", "value": "Cannot read properties of undefined (reading 'id')",
        "mechanism": {"type": "onunhandledrejection", "handled": False},
        "stacktrace": {"frames": [{"filename": "https://shop.example.com/static/app.3f2a.js", "function": "Checkout.submit",
                                    "lineno": 1, "colno": 40211, "in_app": True}]}}]},
    "tags": {"transaction": "/checkout"},
}
rust_event = {
    "level": "fatal", "platform": "native", "message": {"formatted": "called `Option::unwrap()` on a `None` value"},
    "exception": [{"type": "panic", "value": "called `Option::unwrap()` on a `None` value",
                   "mechanism": {"type": "panic", "handled": False}}],
    "threads": {"values": [{"id": 1, "current": True, "stacktrace": {"frames": [
        {"function": "myserver::handler::run", "module": "myserver::handler", "in_app": True},
        {"function": "std::panicking::begin_panic", "filename": "/rustc/abc/library/std/src/panicking.rs", "lineno": 616}]}}]},
    "fingerprint": ["{{default}}"],
}
message_event = {"message": "disk 93% full on /var", "level": "info", "logger": "monitor", "tags": [["k", "v"]]}
# Issue 11, defect 1: 200 `{{default}}` parts over 200 frames (5.9 KB). Before grouping was made linear,
# this input took the event_pipeline target over its heap budget; it stays as a regression input.
defect1_event = {"fingerprint": ["{{default}}"] * 200,
                 "exception": {"values": [{"type": "E", "stacktrace": {"frames": [{"module": "m"}] * 200}}]}}
events = [python_event, js_event, rust_event, message_event, defect1_event]
for e in events:
    put("event_pipeline", json.dumps(e, separators=(",", ":")))

def envelope(header, items):
    out = json.dumps(header).encode() + b"\n"
    for ty, payload, with_length in items:
        h = {"type": ty}
        if with_length:
            h["length"] = len(payload)
        out += json.dumps(h).encode() + b"\n" + payload + b"\n"
    return out

ev = json.dumps(js_event).encode()
put("envelope", envelope({"event_id": "fedcba9876543210fedcba9876543210",
                          "dsn": "https://0123456789abcdef0123456789abcdef@beacon.example.com/1",
                          "sent_at": "2026-01-02T03:04:05Z"},
                         [("event", ev, True), ("attachment", b"\x00\x01binary\n", True),
                          ("session", b'{"sid":"x","status":"ok"}', False)]))
put("envelope", envelope({}, [("event", json.dumps(python_event).encode(), False)]))
put("envelope", b'{"event_id":"0123456789abcdef0123456789abcdef"}\n\n{"type":"client_report","length":2}\n{}')

# --- mobile_batch: the v1.20 payload.
put("mobile_batch", """{"data": {"trace_events": [ {"cat": "react-native", "ph": "X", "name": "team:switch",
 "ts": 1764400000000000, "dur": 412000, "pid": 0, "tid": 5, "args": {"instanceKey": 0, "tag": "team:switch"}} ],
 "device_info": {"api_level": 33, "brand": "google", "model": "Pixel 7", "version": "1.20.0"}}}""")
put("mobile_batch", json.dumps({"data": {"trace_events": [
    {"name": "team:switch", "ts": 1764399000000000, "dur": 1000},
    {"name": "team:jump", "ts": 1764399000000000, "dur": 1000},
    {"name": "channel:switch", "ts": 1764399000000000.5, "dur": 0},
    {"name": "team:switch", "ts": 1764400000000000, "dur": 600000001, "ph": "B"}],
    "device_info": {"app_version": "1.2.3", "is_tablet": True, "height": 2400.0, "device_unique_id": "abc",
                    "system_name": "iOS", "unknown": [1]}}}))
put("mobile_batch", '{"data":{"trace_events":[],"device_info":{"app_version":"1.2.3"}}}')

# --- decode: [encoding selector, limit lo, limit hi] + body (see fuzz_targets/decode.rs).
text = json.dumps(message_event).encode() * 4
def dec(sel, body, limit=4096):
    put("decode", bytes([sel]) + struct.pack("<H", limit) + body)
dec(0, text)
dec(2, text, 16)
dec(3, gzip.compress(text, mtime=0))
dec(4, gzip.compress(text, mtime=0) + gzip.compress(b"second member", mtime=0))
dec(5, zlib.compress(text))
co = zlib.compressobj(wbits=-15)
dec(5, co.compress(text) + co.flush())
dec(3, gzip.compress(b"\0" * 60000, mtime=0), 1000)          # a small bomb
try:
    br = subprocess.run(["python3", "-c", "import brotli,sys;sys.stdout.buffer.write(brotli.compress(sys.stdin.buffer.read()))"],
                        input=text, capture_output=True, check=True).stdout
    dec(6, br)
except Exception:
    pass
try:
    zs = subprocess.run(["zstd", "-q", "-c"], input=text, capture_output=True, check=True).stdout
    dec(7, zs)
    dec(10, zs, 10)
except Exception:
    pass
dec(9, gzip.compress(text, mtime=0))
put("decode", bytes([200, 0, 16, 4]) + b"lzma" + text)

# --- agent_config: mode byte (even: the TOML file, odd: facts JSON) + text.
for toml in [
    """[agent]
collector = "https://beacon.example.com"
state_file = "/var/lib/myserver/beacon-agent.json"
payload_log = true

[agent.errors]
dsn = "https://0123456789abcdef0123456789abcdef@beacon.example.com/1"
release = "myserver@5.37.0"
in_app = ["myserver::"]

[facts]
version = "5.37.0"
build = "1234"
database = "postgres"
database_version = "14.5"
os = "linux"
users = 42
""",
    """[agent]
collector = "http://127.0.0.1:8080"
deployment = "cloud"
security_alerts = false
tick_interval_secs = 60

[facts]
command = ["sh", "-c", "cat facts.json"]

[notifier]
kind = "command"
command = ["sh", "-c", "cat > bulletin.json"]
""",
    """[agent]
diagnostics = false
[notifier]
kind = "file"
path = "/tmp/bulletins.jsonl"
""",
]:
    put("agent_config", b"\x00" + toml.encode())
for facts in [
    {"version": "5.37.0", "database": "postgres", "os": "linux", "teams": 3, "users": 42, "activated_users": 37,
     "enterprise": True, "build": "1234", "database_version": "14.5 (Debian 14.5-1)", "unit_tests": False},
    {"version": "10.0.0-rc.1", "database": "mysql"},
]:
    put("agent_config", b"\x01" + json.dumps(facts).encode())
