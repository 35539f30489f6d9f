"""The whole system over real HTTP: Calendar emulator → push → webhook → Cloud Tasks
emulator → worker → Firestore emulator, with subscriptions and the renewer."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from functions.intake import channel_tokens
from tests.e2e.conftest import E2E, event_body, log_lines, wait_until

pytestmark = pytest.mark.e2e
USER = "erin@example.com"


def fold(entries: list) -> set[str]:  # type: ignore[type-arg]
    live: set[str] = set()
    for entry in entries:
        if entry.kind == "deleted":
            live.discard(entry.event_id)
        else:
            live.add(entry.event_id)
    return live


def assert_converged(e2e: E2E, api, calendar_id: str, sub_id: str) -> None:  # type: ignore[no-untyped-def]
    e2e.wait_quiet(sub_id)
    snapshots = e2e.live_snapshots(sub_id)
    assert snapshots == e2e.listed(api, calendar_id)
    entries = e2e.feed(sub_id)
    assert fold(entries) == set(snapshots)
    assert [e.seq for e in entries] == list(range(1, len(entries) + 1))


def test_subscribe_syncs_in_full_then_pushed_changes_reach_the_feed(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=5)
    sub = e2e.subscribe(calendar_id, USER)
    wait_until(lambda: len(e2e.feed(sub.id)) >= 5, 30, "the initial full sync")
    assert Counter(e.kind for e in e2e.feed(sub.id)) == {"created": 5}

    events = api.events()
    created = events.insert(calendarId=calendar_id, body=event_body("new one", 9)).execute()
    e2e.wait_quiet(sub.id)  # seen before it is deleted (else the feed rightly never shows it)
    first = e2e.feed(sub.id)[0].event_id
    events.patch(calendarId=calendar_id, eventId=first, body={"summary": "renamed"}).execute()
    events.delete(calendarId=calendar_id, eventId=created["id"]).execute()
    assert_converged(e2e, api, calendar_id, sub.id)
    kinds = [(e.kind, e.event_id) for e in e2e.feed(sub.id)[5:]]
    assert kinds == [("created", created["id"]), ("updated", first), ("deleted", created["id"])]
    renamed = [e for e in e2e.feed(sub.id) if e.kind == "updated"][0]
    assert renamed.fields["summary"] == {"before": "seed 0", "after": "renamed"}


def test_forged_notifications_record_and_enqueue_nothing(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=1)
    sub = e2e.subscribe(calendar_id, USER)
    e2e.wait_quiet(sub.id)
    opened = e2e.active_channel(sub.id)
    before = e2e.store.get_subscription(sub.id).requested_gen
    runs = len(e2e.worker_runs(sub.id, None))
    keys = {"k": b"f" * 32}
    base = {"X-Goog-Resource-State": "exists", "X-Goog-Message-Number": "7",
            "X-Goog-Resource-ID": opened.resource_id, "X-Goog-Channel-ID": opened.id}
    assert e2e.notify({**base, "X-Goog-Channel-Token": "v1.local1.forged"}) == 403
    assert e2e.notify({**base, "X-Goog-Channel-Token":
                       channel_tokens.sign(opened.id, keys)}) == 403
    # The token is verified before anything is read: forged on an unknown channel is
    # refused too; a validly signed one for a channel we no longer know is ignored.
    unknown = "11111111-2222-3333-4444-555555555555"
    assert e2e.notify({**base, "X-Goog-Channel-ID": unknown,
                       "X-Goog-Channel-Token": "v1.local1.x"}) == 403
    keyring = e2e.service._settings.channel_token_keys
    assert e2e.notify({**base, "X-Goog-Channel-ID": unknown,
                       "X-Goog-Channel-Token": channel_tokens.sign(unknown, keyring)}) == 200
    good = channel_tokens.sign(opened.id, keyring)
    assert e2e.notify({**base, "X-Goog-Channel-Token": good,
                       "X-Goog-Resource-ID": "someone-elses-resource"}) == 403
    assert e2e.store.get_subscription(sub.id).requested_gen == before
    assert len(e2e.worker_runs(sub.id, None)) == runs


def test_duplicated_delayed_and_merged_notifications_converge(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=3)
    sub = e2e.subscribe(calendar_id, USER)
    e2e.wait_quiet(sub.id)
    events = api.events()
    e2e.control.duplicate_notifications(3)
    events.insert(calendarId=calendar_id, body=event_body("dup", 4)).execute()
    e2e.control.delay_notifications(1.0)
    events.insert(calendarId=calendar_id, body=event_body("late", 5)).execute()
    e2e.control.merge_notifications(0.5)
    for n in range(5):
        events.insert(calendarId=calendar_id, body=event_body(f"merged {n}", n)).execute()
    e2e.control.clear_notification_faults()
    assert_converged(e2e, api, calendar_id, sub.id)
    assert Counter(e.kind for e in e2e.feed(sub.id)) == {"created": 10}


def test_request_recorded_but_never_enqueued_is_repaired_by_the_sweep(e2e: E2E) -> None:
    from datetime import UTC, datetime

    api, calendar_id = e2e.new_calendar(USER, events=1)
    sub = e2e.subscribe(calendar_id, USER)
    e2e.wait_quiet(sub.id)
    e2e.control.pause_notifications(True)  # Google's delivery is not the point here
    api.events().insert(calendarId=calendar_id, body=event_body("after crash", 2)).execute()
    # The webhook's crash window: the request is committed, the task never queued.
    assert e2e.store.record_sync_request(sub.id, datetime.now(UTC)).needs_task
    wait_until(lambda: e2e.renew()["swept"] >= 1, 20, "the sweep to re-enqueue")
    e2e.control.clear_notification_faults()
    assert_converged(e2e, api, calendar_id, sub.id)
    assert len(e2e.feed(sub.id)) == 2


def test_dropped_notifications_are_caught_by_the_safety_net(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=1)
    sub = e2e.subscribe(calendar_id, USER)
    e2e.wait_quiet(sub.id)
    e2e.control.drop_notifications(10)
    api.events().insert(calendarId=calendar_id, body=event_body("dropped", 3)).execute()
    e2e.control.flush_notifications()
    assert len(e2e.feed(sub.id)) == 1
    wait_until(lambda: e2e.renew()["safety_net"] >= 1, 20, "a safety-net sync")
    assert_converged(e2e, api, calendar_id, sub.id)
    assert len(e2e.feed(sub.id)) == 2


def test_renewal_across_expiry_loses_no_change(e2e: E2E) -> None:
    from datetime import UTC, datetime, timedelta

    service = e2e.service
    api, calendar_id = e2e.new_calendar(USER, events=1)
    sub = e2e.subscribe(calendar_id, USER)
    e2e.wait_quiet(sub.id)
    old = e2e.active_channel(sub.id)
    # Its record says it expires within the renewal window (Google's side
    # expires when the test says so, below).
    service._subs.set_channel(old.id, {"expiration": datetime.now(UTC) + timedelta(hours=1)})
    assert e2e.renew()["renewed"] == 1
    status = service.status(sub.id)
    assert status.channel_id != old.id
    e2e.control.expire_channel(old.id)
    api.events().insert(calendarId=calendar_id, body=event_body("after renewal", 4)).execute()
    assert_converged(e2e, api, calendar_id, sub.id)
    assert len(e2e.feed(sub.id)) == 2
    assert e2e.worker_runs(sub.id)  # synced through push on the new channel


def test_invalid_grant_puts_the_subscription_in_error_visible_in_status(e2e: E2E) -> None:
    from functions import app
    from functions.adapters.firestore.credentials import CredentialVault

    settings = app.cli_settings()
    e2e.control.register_refresh_token("rt-for-erin-e2e", USER)
    ref = CredentialVault(app.firestore_client(settings),
                          settings.credential_keys).store_refresh_token("rt-for-erin-e2e")
    api, calendar_id = e2e.new_calendar(USER, events=2)
    sub = e2e.subscribe(calendar_id, USER, ref)
    e2e.wait_quiet(sub.id)
    opened = e2e.active_channel(sub.id)
    assert len(e2e.feed(sub.id)) == 2  # refreshed through the emulator's /token for real
    e2e.control.set_invalid_grant(USER)
    # A fresh worker process would refresh; the resync path reaches the worker too.
    e2e.store.record_sync_request(sub.id, __import__("datetime").datetime.now(
        __import__("datetime").UTC))
    e2e.service.requeue(sub.id, e2e.store.get_subscription(sub.id).requested_gen, "e2e")
    status = wait_until(lambda: (s := e2e.service.status(sub.id)).status == "error" and s,
                        30, "the subscription to enter error")
    assert "credentials" in (status.last_error or "").lower()
    assert "rt-for-erin" not in (status.last_error or "")
    # The same call abandons the channels right after the transition (mark_error).
    wait_until(lambda: e2e.store._client.document(f"channels/{opened.id}").get().to_dict()[
        "state"] == "abandoned", 10, "the subscription's channel to be abandoned")


def test_unsubscribe_during_a_running_sync_leaves_nothing(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER)
    e2e.control.bulk_insert_events(calendar_id, [event_body(f"bulk {n}", n)
                                                 for n in range(6000)])
    sub = e2e.subscribe(calendar_id, USER)
    wait_until(lambda: e2e.feed(sub.id), 60, "the full sync to start writing")
    e2e.service.unsubscribe(sub.id)
    wait_until(lambda: e2e.worker_runs(sub.id, None), 120, "the fenced run to end")
    db = __import__("functions.app", fromlist=["app"]).firestore_client(
        __import__("functions.app", fromlist=["app"]).cli_settings())
    # With a topic the deletion waits for its `subscription_deleted` message: the
    # worker's task publishes what is left, then finishes it (DESIGN.md, "Accounts,
    # lifecycle events, watermark").
    wait_until(lambda: not db.document(f"subscriptions/{sub.id}").get().exists, 120,
               "the worker to finish the deletion once its message is published")
    for name in ("events", "changes", "state"):
        assert list(db.collection(f"subscriptions/{sub.id}/{name}").limit(1).stream()) == []
    assert list(db.collection("channels").limit(1).stream()) == []


def test_a_burst_of_notifications_coalesces_into_few_runs(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=1)
    sub = e2e.subscribe(calendar_id, USER)
    e2e.wait_quiet(sub.id)
    target = e2e.feed(sub.id)[0].event_id
    runs_before = len(e2e.worker_runs(sub.id))
    hook = e2e.run_dir / "function-webhook.log"
    seen_before = len(log_lines(hook, "notification"))
    for n in range(1000):
        api.events().patch(calendarId=calendar_id, eventId=target,
                           body={"description": f"edit {n}"}).execute()
    e2e.wait_quiet(sub.id, timeout=120)
    notes = [line for line in log_lines(hook, "notification")[seen_before:]
             if line.get("subscription") == sub.id]
    assert len(notes) >= 1000
    assert all(line["status"] < 500 for line in notes)
    from datetime import datetime

    stamps = [datetime.fromisoformat(line["time"].replace("Z", "+00:00")) for line in notes]
    burst = (max(stamps) - min(stamps)).total_seconds()
    runs = len(e2e.worker_runs(sub.id)) - runs_before
    interval = float(e2e.service._settings.min_sync_interval)
    assert 1 <= runs <= 1 + math.ceil(burst / interval), (runs, burst)
    queued = sum(1 for line in notes if line["result"] == "queued")
    assert queued <= runs + 1
    # Subscription and channel documents: the webhook counts every write it makes
    # (request counter, queued note, last-notification fields every 5 s); 1,000
    # notifications cost about two writes per run, not one per notification.
    writes = sum(line["writes"] for line in notes)
    record_interval = 5.0
    assert writes <= 2 * (runs + 1) + 2 * (math.ceil(burst / record_interval) + 1), (
        writes, runs, burst)
    snapshot = e2e.store.load_snapshots(sub.id, [target])[target]
    assert snapshot["description"] == "edit 999"


def test_no_secret_ever_reaches_a_function_log(e2e: E2E) -> None:
    """Runs last in this module: scans every line the three functions logged."""
    import re

    secrets = [value.split(":", 1)[1] for key in ("CALSYNC_CHANNEL_TOKEN_KEYS",
                                                  "CALSYNC_CREDENTIAL_KEYS")
               for value in e2e.env[key].split(",")]
    secrets += [e2e.env["CALSYNC_OAUTH_CLIENT_SECRET"], "rt-for-erin-e2e"]
    channel_token = re.compile(r"v1\.local1\.[A-Za-z0-9_-]{20,}")
    logs = sorted(e2e.run_dir.glob("function-*.log"))
    assert len(logs) == 4  # webhook, sync_worker, renew_channels, api
    scanned = 0
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            scanned += 1
            assert not any(secret in line for secret in secrets), (path.name, line[:200])
            assert not channel_token.search(line), (path.name, line[:200])
    assert scanned > 1000  # the module's traffic really was logged and read
