"""Sends errors to a Beacon DSN with the official, unmodified Python sentry-sdk.

Run by the collector's tests (crates/beacon-cli/tests/sdk.rs) from a copy placed under a
`.../home/alice/...` directory, so that frame paths carry a home directory to scrub.
Every value below named CANARY must never reach Beacon's storage.
"""

import os
import sys

import sentry_sdk

DSN = os.environ["BEACON_DSN"]
EMAIL = "alice.canary@example.com"
IP = "203.0.113.77"
TOKEN = "tok_CANARY_5f3a9b1c7d"
CARD = "4111 1111 1111 1111"
PASSWORD = "hunter2-CANARY"


def add_request(event, hint):
    # What a web-framework integration would attach: a request with a bearer token and cookies.
    event["request"] = {
        "url": "https://app.example/login?token=" + TOKEN,
        "headers": {"Authorization": "Bearer " + TOKEN, "Cookie": "session=" + TOKEN},
        "data": {"password": PASSWORD},
    }
    return event


sentry_sdk.init(
    dsn=DSN,
    send_default_pii=True,
    release="app@1.2.3",
    environment="production",
    server_name="db01.customer.internal",
    before_send=add_request,
    transport_queue_size=1000,
)
sentry_sdk.set_user({"email": EMAIL, "ip_address": IP, "username": "alice"})
sentry_sdk.set_tag("client_ip", IP)
sentry_sdk.set_tag("server_id", "srv-python-1")
sentry_sdk.set_extra("contact", "write to " + EMAIL)
sentry_sdk.set_extra("payment", "card " + CARD)
sentry_sdk.set_extra("attempts", 3)


def parse_amount(text):
    return int(text)  # raises ValueError for "abc"


def checkout_a():
    try:
        parse_amount("abc")
    except ValueError:
        sentry_sdk.capture_exception()


def first_call_site():
    raise KeyError("missing-a")


def second_call_site():
    raise KeyError("missing-b")


# The same error raised twice from the same place: one issue, count 2.
checkout_a()
checkout_a()
# The same type from two different call sites: two issues.
for f in (first_call_site, second_call_site):
    try:
        f()
    except KeyError:
        sentry_sdk.capture_exception()
sentry_sdk.capture_message("payment failed for " + EMAIL + " from " + IP)

sentry_sdk.flush(timeout=10)
print("sent", file=sys.stderr)
