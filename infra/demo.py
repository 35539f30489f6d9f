"""`make demo`: the whole local system, told as a story, then stopped.

Each chapter drives the real clients (google-api-python-client against the
Calendar emulator, the functions over HTTP) and prints what it sees.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from infra.local.processes import StackError
from infra.local.stack import ROOT, Stack, StackConfig

USER = "alice@example.com"


class Story:
    def __init__(self) -> None:
        self.chapter = 0

    def title(self, text: str) -> None:
        self.chapter += 1
        print(f"\n== {self.chapter}. {text}", flush=True)

    @staticmethod
    def say(text: str) -> None:
        print(f"   {text}", flush=True)


def _status(url: str, method: str = "GET") -> int:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return None


def _webhook_notifications(run_dir: Path) -> list[dict[str, Any]]:
    seen = []
    log = run_dir / "function-webhook.log"
    if not log.exists():
        return seen
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"message":"notification' in line:
            seen.append(json.loads(line))
    return seen


def calendar_service(env: dict[str, str], user: str) -> Any:
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    # Against the emulator the bearer token string is the user id.
    return build("calendar", "v3", credentials=Credentials(token=user),
                 static_discovery=True, cache_discovery=False,
                 client_options={"api_endpoint": env["CALENDAR_API_ENDPOINT"]})


def run(story: Story, stack: Stack) -> None:
    env = stack.env
    run_dir = Path(env["CALSYNC_RUN_DIR"])

    story.title("Every component answers")
    checks = {
        "Firestore emulator": f"http://{env['FIRESTORE_EMULATOR_HOST']}/",
        "Calendar API emulator": env["CALENDAR_EMULATOR_CONTROL"] + "health",
        "webhook function": env["CALSYNC_WEBHOOK_URL"],
        "sync_worker function": env["CALSYNC_WORKER_URL"],
        "renew_channels function": env["CALSYNC_RENEWER_URL"],
    }
    for name, url in checks.items():
        story.say(f"{name:<24} {url:<48} HTTP {_status(url)}")
    story.say(f"{'Cloud Tasks emulator':<24} {env['CLOUD_TASKS_EMULATOR_HOST']:<48} "
              f"queue {env['CALSYNC_TASKS_QUEUE_PATH']} created")

    story.title(f"{USER} fills a calendar through google-api-python-client")
    service = calendar_service(env, USER)
    calendar = service.calendars().insert(body={"summary": "Team offsite"}).execute()
    calendar_id = calendar["id"]
    story.say(f"calendars.insert -> {calendar_id}")
    for day, summary in ((1, "Kick-off"), (2, "Design review"), (3, "Retro")):
        event = service.events().insert(calendarId=calendar_id, body={
            "summary": summary,
            "start": {"dateTime": f"2026-12-0{day}T09:00:00Z"},
            "end": {"dateTime": f"2026-12-0{day}T10:00:00Z"},
        }).execute()
        story.say(f"events.insert  -> {event['id']}  {summary!r}  etag {event['etag']}")
    listing = service.events().list(calendarId=calendar_id).execute()
    story.say(f"events.list    -> {len(listing['items'])} events, "
              f"nextSyncToken {'present' if listing.get('nextSyncToken') else 'missing'}")

    story.title("A watch channel points the calendar at the webhook function")
    channel_id = str(uuid.uuid4())
    channel = service.events().watch(calendarId=calendar_id, body={
        "id": channel_id, "type": "web_hook", "address": env["CALSYNC_WEBHOOK_URL"],
        "token": "demo-token", "params": {"ttl": "3600"},
    }).execute()
    story.say(f"events.watch   -> channel {channel['id']}, resource {channel['resourceId']}, "
              f"expires {channel['expiration']} (epoch ms)")
    arrived = _wait_for(lambda: [n for n in _webhook_notifications(run_dir)
                                 if n.get("channel_id") == channel_id])
    for note in arrived or []:
        story.say(f"webhook received: state={note['resource_state']} "
                  f"message={note['message_number']}")
    if not arrived:
        raise SystemExit("demo: the initial sync notification never reached the webhook")

    story.title("A change in the calendar pushes a notification")
    service.events().insert(calendarId=calendar_id, body={
        "summary": "Dinner", "start": {"dateTime": "2026-12-03T19:00:00Z"},
        "end": {"dateTime": "2026-12-03T21:00:00Z"},
    }).execute()
    story.say("events.insert  -> 'Dinner'")
    exists = _wait_for(lambda: [n for n in _webhook_notifications(run_dir)
                                if n.get("channel_id") == channel_id
                                and n.get("resource_state") == "exists"])
    if not exists:
        raise SystemExit("demo: no `exists` notification reached the webhook")
    story.say(f"webhook received: state=exists message={exists[0]['message_number']}")
    story.say("(the webhook answers 501 until its issue lands: the sync engine is next)")
    service.channels().stop(body={"id": channel_id,
                                  "resourceId": channel["resourceId"]}).execute()
    story.say("channels.stop  -> 204")


def main() -> int:
    story = Story()
    story.title("The local stack starts (emulators and the three functions)")
    stack = Stack(StackConfig(run_dir=ROOT / ".run"))
    try:
        stack.start(progress=True)
        run(story, stack)
    except StackError as err:
        print(f"demo: the stack did not start: {err}", file=sys.stderr)
        return 1
    finally:
        story.title("Everything stops")
        pids = stack.pids()
        stack.stop()
        story.say(f"stopped {len(pids)} processes; logs kept in {ROOT / '.run'}")
    print("\ndemo finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
