"""`make demo`: the whole local system, told as a story, then stopped.

Every chapter drives real parts: google-api-python-client against the
Calendar emulator, push notifications over HTTP to the webhook function,
sync tasks through the Cloud Tasks emulator to the worker function, and a
consumer application that connects its user's account through the `api`
function with an OAuth authorization code and follows the change feed by
cursor over HTTP.
"""

from __future__ import annotations

import math
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra import demo_accounts
from infra.demo_kit import (
    REDIRECT,
    Api,
    DemoFailed,
    Story,
    calendar_service,
    consent_code,
    post_json,
    wait_for,
)
from infra.local.logs import json_log_lines
from infra.local.processes import StackError
from infra.local.stack import ROOT, Stack, StackConfig

USER = "alice@example.com"
# Short channel lifetimes and a short safety-net interval, so renewal and the
# safety net happen within the demo instead of within days.
DEMO_SETTINGS = {
    "CALSYNC_CHANNEL_TTL_SECONDS": "300",
    "CALSYNC_RENEWAL_WINDOW_SECONDS": "285",
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "4",
    "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "2",
}


def _status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


class Feed:
    """Follows a subscription's change feed by cursor through the API, printing each entry."""

    def __init__(self, api: Api, sub_id: str, cursor: int = 0) -> None:
        self.api, self.sub_id, self.cursor = api, sub_id, cursor

    def drain(self, story: Story, expect: int, timeout: float = 40.0,
              show: int = 1000) -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, page = self.api.call(
                "GET", f"/v1/subscriptions/{self.sub_id}/changes?cursor={self.cursor}&limit=500")
            if status != 200:
                raise DemoFailed(f"changes answered {status}: {page}")
            for entry in page["changes"]:
                if len(got) < show:
                    story.say(describe(entry))
                got.append(entry)
            self.cursor = page["next_cursor"]
            if len(got) >= expect and not page["has_more"]:
                break
            if not page["has_more"]:
                time.sleep(0.3)
        if len(got) > show:
            story.say(f"... and {len(got) - show} more")
        return got


def describe(entry: dict[str, Any]) -> str:
    recurring, fields = entry.get("recurring_event_id"), entry.get("fields") or {}
    series = f" (instance of {recurring})" if recurring else ""
    head = f"#{entry['seq']:<4} {entry['kind']:<8} {entry['event_id']}{series}"
    if entry["kind"] != "updated":
        summary = (fields.get("summary") or {}).get("after" if entry["kind"] == "created"
                                                     else "before")
        return head + (f"  {summary!r}" if summary else "")
    parts = []
    for name, change in sorted(fields.items()):
        before, after = change.get("before"), change.get("after")
        if name in ("start", "end"):
            before = (before or {}).get("dateTime") or (before or {}).get("date")
            after = (after or {}).get("dateTime") or (after or {}).get("date")
        parts.append(f"{name}: {before!r} -> {after!r}")
    return head + "  " + "; ".join(parts)


def run(story: Story, stack: Stack) -> None:
    env = stack.env
    run_dir = Path(env["CALSYNC_RUN_DIR"])
    os.environ.update(env)  # the service code reads the same variables as the functions
    from functions import app
    from infra.calendar_emulator.control import EmulatorControl

    app.reset()
    settings = app.cli_settings()
    service = app.subscription_service(settings)
    store = app.store(settings)
    control = EmulatorControl(env["CALENDAR_EMULATOR_CONTROL"].rsplit("/control", 1)[0])

    story.title("Every component answers")
    checks = {
        "Firestore emulator": f"http://{env['FIRESTORE_EMULATOR_HOST']}/",
        "Calendar API emulator": env["CALENDAR_EMULATOR_CONTROL"] + "health",
        "webhook function": env["CALSYNC_WEBHOOK_URL"],
        "sync_worker function": env["CALSYNC_WORKER_URL"],
        "renew_channels function": env["CALSYNC_RENEWER_URL"],
        "api function": env["CALSYNC_API_URL"] + "/v1/openapi.json",
    }
    for name, url in checks.items():
        story.say(f"{name:<24} {url:<44} HTTP {_status(url)} to a GET")
    story.say(f"{'Cloud Tasks emulator':<24} {env['CLOUD_TASKS_EMULATOR_HOST']:<44} "
              f"queue {env['CALSYNC_TASKS_QUEUE']}")

    story.title(f"{USER} already has a calendar with events")
    cal = calendar_service(env, USER)
    events = cal.events()
    calendar_id = cal.calendars().insert(body={"summary": "Team"}).execute()["id"]
    made = {}
    for day, summary in ((1, "Kick-off"), (2, "Design review"), (3, "Retro")):
        made[summary] = events.insert(calendarId=calendar_id, body={
            "summary": summary, "start": {"dateTime": f"2026-12-0{day}T09:00:00Z"},
            "end": {"dateTime": f"2026-12-0{day}T10:00:00Z"}}).execute()
    standup = events.insert(calendarId=calendar_id, body={
        "summary": "Standup", "start": {"dateTime": "2026-12-07T09:30:00Z", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-07T09:45:00Z", "timeZone": "UTC"},
        "recurrence": ["RRULE:FREQ=DAILY;COUNT=10"]}).execute()
    story.say(f"calendar {calendar_id}: 3 single events and a daily 'Standup' series")

    story.title("An app connects the user's account through the API (OAuth code flow)")
    api = Api(env["CALSYNC_API_URL"])
    sub_id, code_used = connect(story, api, env, calendar_id)
    status, again = api.call("POST", "/v1/subscriptions", {
        "calendar_id": calendar_id, "oauth": {"code": code_used, "redirect_uri": REDIRECT}})
    story.say(f"the same code again -> {status} {again['error']['code']}: "
              f"{again['error']['message']}")

    story.title("The app bootstraps: current events, then the feed from as_of_seq")
    wait_quiet = wait_for(lambda: _quiet(store, sub_id) and store.get_writer_state(sub_id)
                           .get("sync_token"), timeout=40)
    if not wait_quiet:
        raise DemoFailed("the first sync did not finish within 40s")
    status, page = api.call("GET", f"/v1/subscriptions/{sub_id}/events?limit=100")
    for item in page["events"]:
        story.say(f"event {item['event_id']}: {item['event'].get('summary')!r}")
    story.say(f"{len(page['events'])} events as of feed position {page['as_of_seq']}; "
              f"the app follows GET /v1/subscriptions/{{id}}/changes?cursor=N from there")
    history = Feed(api, sub_id)
    story.say("(the first sync also put each event in the feed as `created`:)")
    history.drain(story, expect=4)
    feed = Feed(api, sub_id, cursor=page["as_of_seq"])
    sub = store.get_subscription(sub_id)
    assert sub is not None

    story.title("Changes in the calendar arrive as field-level feed entries")
    events.patch(calendarId=calendar_id, eventId=made["Kick-off"]["id"],
                 body={"summary": "Kick-off (all hands)", "location": "Room 1"}).execute()
    story.say("patched 'Kick-off': new title and a location")
    feed.drain(story, expect=1)
    events.patch(calendarId=calendar_id, eventId=made["Design review"]["id"], body={
        "start": {"dateTime": "2026-12-02T14:00:00Z"},
        "end": {"dateTime": "2026-12-02T15:00:00Z"}}).execute()
    story.say("moved 'Design review' to the afternoon")
    feed.drain(story, expect=1)
    events.delete(calendarId=calendar_id, eventId=made["Retro"]["id"]).execute()
    story.say("deleted 'Retro'")
    feed.drain(story, expect=1)
    instances = events.instances(calendarId=calendar_id, eventId=standup["id"]).execute()
    second, third = instances["items"][1], instances["items"][2]
    events.patch(calendarId=calendar_id, eventId=second["id"],
                 body={"summary": "Standup (demo day)"}).execute()
    events.delete(calendarId=calendar_id, eventId=third["id"]).execute()
    story.say("edited one 'Standup' instance and cancelled another")
    feed.drain(story, expect=2)

    story.title("Told at once: Pub/Sub pushes every change to the app")
    pushed = wait_for(lambda: (lines := _consumer_lines(run_dir)) and
                       any("Standup (demo day)" in line for line in lines) and lines,
                       timeout=30) or _consumer_lines(run_dir)
    story.say(f"the worker published each committed entry to topic "
              f"{env.get('CALSYNC_PUBSUB_TOPIC')} (ordering key = subscription id); the "
              f"push subscription delivered them to the app at {env.get('CALSYNC_CONSUMER_URL')}:")
    for line in pushed[-8:]:
        story.say(f"app: {line}")

    story.title("A burst of 200 rapid edits collapses into a few sync runs")
    before_runs = len(_synced_runs(run_dir, sub.id))
    started = time.monotonic()
    for n in range(200):
        events.patch(calendarId=calendar_id, eventId=made["Kick-off"]["id"],
                     body={"description": f"edit {n}"}).execute()
    burst = time.monotonic() - started
    entries = feed.drain(story, expect=1, show=3)
    wait_for(lambda: _quiet(store, sub.id), timeout=30)
    runs = len(_synced_runs(run_dir, sub.id)) - before_runs
    final = store.get_subscription(sub.id)
    bound = 1 + math.ceil(burst / settings.min_sync_interval)
    story.say(f"200 edits in {burst:.1f}s -> {runs} sync runs (DESIGN bound 1 + ceil(T / "
              f"MIN_SYNC_INTERVAL) = {bound}), {len(entries)} feed entries; "
              f"GET .../events/{{id}} holds the last edit: "
              f"{_event(api, sub.id, made['Kick-off']['id']).get('description')!r}")
    assert final is not None

    story.title("A channel nears expiry and is replaced; no change is lost")
    story.say(f"channels here live {DEMO_SETTINGS['CALSYNC_CHANNEL_TTL_SECONDS']}s and are "
              f"renewed within {DEMO_SETTINGS['CALSYNC_RENEWAL_WINDOW_SECONDS']}s of expiry")
    first_channel = service.status(sub.id).channel_id
    time.sleep(max(0.0, _seconds_until_due(service, sub.id, settings)))
    answer = post_json(env["CALSYNC_RENEWER_URL"])
    story.say(f"renew_channels -> renewed {answer.get('renewed')}, "
              f"safety-net syncs {answer.get('safety_net')}")
    status = service.status(sub.id)
    story.say(f"now on channel {status.channel_id} (was {first_channel})")
    control.expire_channel(first_channel)
    events.patch(calendarId=calendar_id, eventId=made["Design review"]["id"],
                 body={"summary": "Design review v2"}).execute()
    story.say("old channel expired at Google; renamed 'Design review'")
    feed.drain(story, expect=1)

    story.title("Dropped notifications are caught by the safety net")
    # A run still queued from the last chapter would list 'Offsite' without any push.
    control.flush_notifications(timeout=10)
    wait_for(lambda: _quiet(store, sub.id), timeout=30)
    control.drop_notifications(5)
    events.insert(calendarId=calendar_id, body={
        "summary": "Offsite", "start": {"date": "2026-12-10"},
        "end": {"date": "2026-12-11"}}).execute()
    story.say("created 'Offsite' while the emulator drops the next notifications")
    quiet = feed.drain(story, expect=1, timeout=4)
    story.say(f"feed after 4s: {len(quiet)} entries " + (
        "(the notification never came)" if not quiet
        else "(a run already under way listed it; its notification was dropped all the same)"))
    time.sleep(float(DEMO_SETTINGS["CALSYNC_SAFETY_NET_INTERVAL_SECONDS"]))
    answer = post_json(env["CALSYNC_RENEWER_URL"])
    story.say(f"renew_channels -> safety-net syncs {answer.get('safety_net')}")
    feed.drain(story, expect=1 - len(quiet))
    # The drops not spent here would swallow the next chapters' notifications.
    control.clear_notification_faults()

    story.title("Status, as the app and the operator see it")
    status, view = api.call("GET", f"/v1/subscriptions/{sub.id}")
    story.say(f"GET /v1/subscriptions/{{id}} -> {status}: status {view['status']}, "
              f"channel {view['channel']['state'] if view['channel'] else None}, "
              f"change_seq {view['change_seq']}, error {view['error']}")
    from functions.cli.main import main as cli

    cli(["status"])

    demo_accounts.tell(story, env, api, control, others={sub.id: f"{USER.split('@')[0]}'s Team"})


def connect(story: Story, api: Api, env: dict[str, str], calendar_id: str) -> tuple[str, str]:
    """The consent redirect, then the code handed to calsync; (subscription id, code)."""
    code = consent_code(story, api, USER)
    status, sub = api.call("POST", "/v1/subscriptions", {
        "calendar_id": calendar_id, "oauth": {"code": code, "redirect_uri": REDIRECT},
        "labels": {"app_user": "alice"}})
    if status != 201:
        raise DemoFailed(f"subscribe answered {status}: {sub}")
    story.say(f"POST /v1/subscriptions -> 201: subscription {sub['id']} for {sub['owner']} "
              f"(owner from the ID token; refresh token sealed at once, never returned); "
              f"the first sync opens the watch channel, then lists")
    return str(sub["id"]), code


def _consumer_lines(run_dir: Path) -> list[str]:
    """What the example consumer printed: one line per change it was pushed."""
    try:
        text = (run_dir / "consumer.log").read_text()
    except OSError:
        return []
    return [line for line in text.splitlines() if line.startswith("subscription ")]


def _synced_runs(run_dir: Path, sub_id: str) -> list[dict[str, Any]]:
    return [line for line in json_log_lines(run_dir / "function-sync_worker.log", "sync run")
            if line.get("subscription") == sub_id and line.get("outcome") == "synced"]


def _quiet(store: Any, sub_id: str) -> bool:
    sub = store.get_subscription(sub_id)
    state = store.get_writer_state(sub_id)
    return bool(sub and sub.requested_gen <= int(state.get("synced_gen") or 0)
                and not state.get("lease_until"))


def _event(api: Api, sub_id: str, event_id: str) -> dict[str, Any]:
    status, item = api.call("GET", f"/v1/subscriptions/{sub_id}/events/{event_id}")
    return dict(item["event"]) if status == 200 else {}


def _seconds_until_due(service: Any, sub_id: str, settings: Any) -> float:
    from datetime import UTC, datetime

    expiration = service.status(sub_id).channel_expiration
    if expiration is None:
        return 0.0
    due = expiration.timestamp() - settings.renewal_window
    return due - datetime.now(UTC).timestamp() + 0.5


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.demo")
    parser.add_argument("--run-dir", type=Path, default=ROOT / ".run",
                        help="where logs and stack.env go")
    run_dir = parser.parse_args(argv).run_dir.resolve()
    story = Story()
    story.title("The local stack starts (emulators and the four functions)")
    stack = Stack(StackConfig(run_dir=run_dir, extra_function_env=dict(DEMO_SETTINGS)))
    code = 0
    try:
        stack.start(progress=True)
        run(story, stack)
    except StackError as err:
        print(f"demo: the stack did not start: {err}", file=sys.stderr)
        code = 1
    except DemoFailed as err:
        print(f"\ndemo FAILED: {err}", file=sys.stderr, flush=True)
        code = 1
    finally:
        story.title("Everything stops")
        pids = stack.pids()
        stack.stop()
        story.say(f"stopped {len(pids)} processes; logs kept in {run_dir}")
    if code == 0:
        print("\ndemo finished", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
