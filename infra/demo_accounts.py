"""The accounts chapters of `make demo` (issue 20): connect a whole account, a
calendar shared with it and unshared, the grant revoked and given again; then
the app's side checked: every subscription's feed entry reached the example
consumer exactly once, in `seq` order, and its copy equals calsync's.

Everything goes through the real path: the list's and calendars' pushes from
the Calendar emulator to the webhook, tasks through the Cloud Tasks emulator to
the worker, Pub/Sub to the consumer; the demo only plays the users, Google's
consent page and Cloud Scheduler (a POST to `renew_channels`, whose safety net
is what notices a revoked grant on a calendar nobody touches). Each step checks
what it says and raises `DemoFailed` with one line when the system did not.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

from examples.consumer.store import SqliteConsumerStore
from infra.demo_kit import (
    REDIRECT,
    Api,
    DemoFailed,
    Story,
    calendar_service,
    consent_code,
    expect,
    post_json,
)

OWNER = "bea@example.com"  # connects her account
COLLEAGUE = "dan@example.com"  # shares a calendar with her, then unshares it
ADDED, REMOVED = "calendar_added", "calendar_removed"
REAUTH, RECOVERED = "reauthorization_required", "recovered"  # lifecycle entries' kinds
RENEWER_EVERY = 5.0  # seconds between the demo's Cloud Scheduler ticks while it waits
# What the example consumer prints per applied entry, or per bootstrap
# (examples/consumer/app.py `describe` and `_bootstrap`).
CONSUMER_LINE = re.compile(
    r"^subscription ([^\s,]+), (?:seq (\d+), (\w+)|bootstrapped at seq (\d+))")


def _event(summary: str, day: int) -> dict[str, Any]:
    return {"summary": summary, "start": {"dateTime": f"2026-12-{day:02d}T11:00:00Z"},
            "end": {"dateTime": f"2026-12-{day:02d}T12:00:00Z"}}


class Account:
    """The app's view of one account through `/v1`."""

    def __init__(self, api: Api, account_id: str) -> None:
        self.api, self.id = api, account_id

    def health(self) -> dict[str, Any]:
        return dict(self.api.ok("GET", f"/v1/accounts/{self.id}"))

    def subscriptions(self, status: str | None = None) -> dict[str, dict[str, Any]]:
        """By calendar id: the account's subscriptions (followed and removed)."""
        query = f"account={self.id}" + (f"&status={status}" if status else "")
        found: dict[str, dict[str, Any]] = {}
        token = ""
        while True:
            page = self.api.ok("GET", f"/v1/subscriptions?{query}&limit=100{token}")
            found.update({sub["calendar_id"]: sub for sub in page["subscriptions"]})
            if not page.get("next_page_token"):
                return found
            token = f"&page_token={page['next_page_token']}"


def feed(api: Api, sub_id: str) -> list[dict[str, Any]]:
    """A subscription's whole change feed, read by cursor."""
    entries: list[dict[str, Any]] = []
    cursor = 0
    while True:
        page = api.ok("GET", f"/v1/subscriptions/{sub_id}/changes?cursor={cursor}&limit=500")
        entries += page["changes"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return entries


def current_events(api: Api, sub_id: str) -> dict[str, str]:
    """calsync's current events of a subscription: event id -> summary."""
    events: dict[str, str] = {}
    token = ""
    while True:
        page = api.ok("GET", f"/v1/subscriptions/{sub_id}/events?limit=500{token}")
        for item in page["events"]:
            if not item.get("deleted"):
                events[item["event_id"]] = str((item.get("event") or {}).get("summary"))
        if not page.get("next_page_token"):
            return events
        token = f"&page_token={page['next_page_token']}"


def kinds(api: Api, sub_id: str) -> list[str]:
    return [entry["kind"] for entry in feed(api, sub_id)]


def opened(api: Api, sub_id: str, created: int) -> list[str] | None:
    """The feed's kinds once it opens with `calendar_added` and holds `created` events."""
    found = kinds(api, sub_id)
    return found if found[:1] == [ADDED] and found.count("created") == created else None


def find_entry(api: Api, sub_id: str, event_id: str, kind: str) -> dict[str, Any] | None:
    return next((entry for entry in feed(api, sub_id)
                 if entry.get("event_id") == event_id and entry["kind"] == kind), None)


class ConsumerView:
    """What the example consumer app holds: its SQLite store (position and copy,
    per subscription) and its log (one line per applied entry)."""

    def __init__(self, run_dir: Path) -> None:
        self.log = run_dir / "consumer.log"
        self.store = SqliteConsumerStore(str(run_dir / "consumer.sqlite3"))

    def at(self, sub_id: str, seq: int) -> bool:
        """Whether the app's position for the subscription has reached `seq`."""
        return self.store.position(sub_id) >= seq

    def lines(self, sub_id: str) -> list[str]:
        prefix = f"subscription {sub_id},"
        return [line for line in self._all_lines() if line.startswith(prefix)]

    def line_of(self, sub_id: str, kind: str) -> str | None:
        """The app's last line for an entry of `kind` of the subscription, if any."""
        found = [line for line in self.lines(sub_id) if f", {kind}" in line.split(":", 1)[0]]
        return found[-1] if found else None

    def printed(self) -> dict[str, list[tuple[str, int]]]:
        """By subscription id (printed in full): ("seq" | "bootstrap", n) in order."""
        seen: dict[str, list[tuple[str, int]]] = {}
        for line in self._all_lines():
            match = CONSUMER_LINE.match(line)
            if match:
                sub_id, seq, _kind, boot = match.groups()
                seen.setdefault(sub_id, []).append(
                    ("seq", int(seq)) if seq else ("bootstrap", int(boot)))
        return seen

    def _all_lines(self) -> list[str]:
        try:
            return self.log.read_text().splitlines()
        except OSError:
            return []


def tell(story: Story, env: dict[str, str], api: Api, control: Any,
         others: Mapping[str, str] | None = None) -> None:
    """The accounts chapters; `others`: subscriptions made earlier (id -> what to call
    it), checked at the end too."""
    consumer = ConsumerView(Path(env["CALSYNC_RUN_DIR"]))
    renewer = env["CALSYNC_RENEWER_URL"]
    names: dict[str, str] = {}

    story.title(f"{OWNER} connects her whole account: her three calendars are followed")
    primary = control.add_user(OWNER)
    google = calendar_service(env, OWNER)
    names[primary] = "primary"
    for name in ("Work", "Home"):
        names[google.calendars().insert(body={"summary": name}).execute()["id"]] = name
    work, home = (cal for cal, name in names.items() if name in ("Work", "Home"))
    seeded = {primary: ["Dentist"], work: ["Planning", "1:1 with Dan"], home: ["Piano lesson"]}
    ids: dict[str, str] = {}
    for day, (calendar_id, summaries) in enumerate(seeded.items(), start=14):
        for summary in summaries:
            ids[summary] = google.events().insert(calendarId=calendar_id,
                                                  body=_event(summary, day)).execute()["id"]
    story.say("her calendars: " + ", ".join(f"{names[c]} ({_events(len(s))})"
                                            for c, s in seeded.items()))
    code = consent_code(story, api, OWNER)
    created = api.ok("POST", "/v1/accounts", {
        "oauth": {"code": code, "redirect_uri": REDIRECT}, "policy": {"calendars": "all"}},
        status=201)
    account = Account(api, created["id"])
    story.say(f"POST /v1/accounts -> 201: account {account.id} for {created['owner']} "
              f"(policy: every readable calendar); calsync lists and watches her calendar list")
    expect(lambda: account.health()["calendars_followed"] == 3, 60,
           "the account follows her three calendars")
    subs = account.subscriptions()
    if set(subs) != set(names):
        raise DemoFailed(f"the account follows {sorted(subs)}, not her calendars {sorted(names)}")
    for calendar_id, sub in subs.items():
        want = len(seeded[calendar_id])
        got = expect(partial(opened, api, sub["id"], want), 60,
                     f"{names[calendar_id]}: calendar_added then {want} created")
        story.say(f"followed: {names[calendar_id]:<8} subscription {sub['id']}: "
                  f"feed {', '.join(got)}")
    health = expect(lambda: (lambda a: a if (a["channel"] or {}).get("state") == "active"
                             else None)(account.health()), 60, "the calendar list watched")
    story.say(f"GET /v1/accounts/{{id}}: status {health['status']}, calendars_followed "
              f"{health['calendars_followed']}, list channel {health['channel']['state']}, "
              f"last list sync {health['last_list_sync_at']}")

    story.title(f"{COLLEAGUE} shares a fourth calendar with her: it is followed")
    colleague = calendar_service(env, COLLEAGUE)
    club = colleague.calendars().insert(body={"summary": "Book club"}).execute()["id"]
    names[club] = "Book club"
    for day, summary in ((20, "Book club: Middlemarch"), (27, "Book club: Dune")):
        colleague.events().insert(calendarId=club, body=_event(summary, day)).execute()
    control.share_calendar(club, OWNER, "reader")
    story.say(f"{COLLEAGUE} shares 'Book club' (2 events) with {OWNER} as reader")
    expect(lambda: account.health()["calendars_followed"] == 4, 60,
           "the shared calendar followed (the calendar list's push)")
    shared = account.subscriptions()[club]
    got = expect(partial(opened, api, shared["id"], 2), 60,
                 "Book club: calendar_added then its 2 events")
    story.say(f"followed: Book club subscription {shared['id']}: feed {', '.join(got)}")
    expect(partial(consumer.at, shared["id"], len(got)), 60,
           f"the consumer app applied Book club's {len(got)} entries")
    for line in consumer.lines(shared["id"]):
        story.say(f"app: {line}")

    story.title("She loses the shared calendar: it is left, its feed kept")
    control.unshare_calendar(club, OWNER)
    story.say(f"{COLLEAGUE} unshares 'Book club'")
    expect(lambda: account.health()["calendars_followed"] == 3, 60,
           "the unshared calendar left (the calendar list's push)")
    removed = account.subscriptions(status="removed")
    if set(removed) != {club}:
        raise DemoFailed(f"removed subscriptions are {sorted(removed)}, not only Book club")
    left = feed(api, shared["id"])
    if left[-1]["kind"] != REMOVED:
        raise DemoFailed(f"Book club's feed ends with {left[-1]['kind']}, not {REMOVED}")
    kept = current_events(api, shared["id"])
    story.say(f"subscription {shared['id']}: status {removed[club]['status']}, feed "
              f"{', '.join(e['kind'] for e in left)} (reason "
              f"{(left[-1].get('details') or {}).get('reason')}); its {len(kept)} events stay "
              f"readable for the retention period")

    story.title("She revokes calsync's access: the account and its calendars need her again")
    control.set_invalid_grant(OWNER)
    story.say(f"Google now answers invalid_grant to {OWNER}'s refresh token")
    meanwhile = {work: control.bulk_insert_events(work, [_event("Offsite planning", 22)])[0],
                 home: control.bulk_insert_events(home, [_event("Plumber", 23)])[0]}
    story.say("meanwhile she keeps using Google Calendar: adds 'Offsite planning' to Work "
              "and 'Plumber' to Home")
    followed = {c: s for c, s in subs.items()}
    ticks = _until_all_need_reauthorization(account, followed, renewer)
    health = account.health()
    story.say(f"Google refused the syncs Work's and Home's pushes brought, and the safety "
              f"net's ({ticks} renew_channels tick(s): it lists the account and syncs the "
              f"calendars nobody touched)")
    story.say(f"account {account.id}: status {health['status']}, error "
              f"{health['error']['reason']}")
    for calendar_id, sub in account.subscriptions(status="error").items():
        story.say(f"{names[calendar_id]:<8} subscription {sub['id']}: status {sub['status']}, "
                  f"error {sub['error']['reason']}")
    _consumer_heard(story, consumer, followed, names, REAUTH)

    story.title("She connects again: everything resumes, and what she did meanwhile arrives")
    control.set_invalid_grant(OWNER, enabled=False)
    code = consent_code(story, api, OWNER)
    again = api.ok("POST", "/v1/accounts", {
        "oauth": {"code": code, "redirect_uri": REDIRECT}, "policy": {"calendars": "all"}})
    if again["id"] != account.id:
        raise DemoFailed(f"connecting again made account {again['id']}, not {account.id}")
    story.say(f"POST /v1/accounts -> 200: the same account {account.id}; the new grant "
              f"replaces the old for it and its subscriptions")
    expect(lambda: (lambda a: a["status"] == "active" and not a["error"])(account.health()),
           60, "the account active again")
    expect(lambda: all(s["status"] == "active" for c, s in account.subscriptions().items()
                       if c != club), 60, "her three subscriptions active again")
    for calendar_id, event_id in meanwhile.items():
        sub_id = subs[calendar_id]["id"]
        entry = expect(partial(find_entry, api, sub_id, event_id, "created"), 60,
                       f"the event made in {names[calendar_id]} while revoked in its feed")
        summary = entry["fields"]["summary"]["after"]
        story.say(f"{names[calendar_id]:<8} #{entry['seq']} created {summary!r} (made while "
                  f"revoked)")
    google.events().patch(calendarId=work, eventId=ids["Planning"],
                          body={"summary": "Planning (Q1)"}).execute()
    story.say("she renames 'Planning' in Work")
    entry = expect(partial(find_entry, api, subs[work]["id"], ids["Planning"], "updated"), 60,
                   "the rename after reconnecting in Work's feed")
    story.say(f"Work     #{entry['seq']} updated summary 'Planning' -> 'Planning (Q1)'")
    if account.subscriptions()[club]["status"] != "removed":
        raise DemoFailed("Book club came back although it is still unshared")
    story.say("Book club stays removed: it is still unshared")
    for calendar_id, sub in followed.items():
        told = kinds(api, sub["id"])
        if REAUTH not in told or RECOVERED not in told[told.index(REAUTH):]:
            raise DemoFailed(f"{names[calendar_id]}'s feed {told} lacks {REAUTH} then {RECOVERED}")
    _consumer_heard(story, consumer, followed, names, RECOVERED)

    final = {s["id"]: names[c] for c, s in account.subscriptions().items()}
    check_consumer(story, api, consumer, {**final, **(others or {})})


def _consumer_heard(story: Story, consumer: ConsumerView, subs: dict[str, dict[str, Any]],
                    names: dict[str, str], kind: str) -> None:
    """Show the consumer app's line for each subscription's `kind` entry, once it came."""
    for calendar_id, sub in subs.items():
        line = expect(partial(consumer.line_of, sub["id"], kind), 60,
                      f"the consumer app applied {names[calendar_id]}'s {kind} entry")
        story.say(f"app: {line}")


def _until_all_need_reauthorization(account: Account, subs: dict[str, dict[str, Any]],
                                    renewer: str, timeout: float = 90.0) -> int:
    """Cloud Scheduler's ticks until the account and `subs` are in error for
    reauthorization; how many ticks it took."""
    deadline = time.monotonic() + timeout
    ticks, last_tick = 0, time.monotonic()
    while time.monotonic() < deadline:
        health = account.health()
        now = account.subscriptions()
        if (health["status"] == "error" and (health["error"] or {}).get("reason") == REAUTH
                and all(now[c]["status"] == "error"
                        and (now[c]["error"] or {}).get("reason") == REAUTH for c in subs)):
            return ticks
        if time.monotonic() - last_tick >= RENEWER_EVERY:
            post_json(renewer)
            ticks, last_tick = ticks + 1, time.monotonic()
        time.sleep(0.5)
    states = {s["id"]: (s["status"], (s["error"] or {}).get("reason"))
              for s in account.subscriptions().values()}
    raise DemoFailed(f"after {timeout:.0f}s the account is {account.health()['status']} and its "
                     f"subscriptions {states}, not all in error for {REAUTH}")


def check_consumer(story: Story, api: Api, consumer: ConsumerView,
                   names: Mapping[str, str]) -> None:
    """Per subscription: the feed is dense, the consumer app applied every entry
    once and in `seq` order (its log), its position is the feed's end and its copy
    holds calsync's events."""
    story.title("The app saw every feed entry once, in order, for every subscription")
    sub_ids = list(names)
    lasts: dict[str, int] = {}
    for sub_id in sub_ids:
        entries = feed(api, sub_id)
        seqs = [int(e["seq"]) for e in entries]
        if seqs != list(range(1, len(seqs) + 1)):
            raise DemoFailed(f"subscription {sub_id}'s feed is not dense from 1: {seqs}")
        change_seq = api.ok("GET", f"/v1/subscriptions/{sub_id}")["change_seq"]
        if change_seq != len(seqs):
            raise DemoFailed(f"subscription {sub_id}: change_seq {change_seq}, feed {len(seqs)}")
        last = lasts[sub_id] = len(seqs)
        expect(partial(consumer.at, sub_id, last), 60,
               f"the consumer app at seq {last} of subscription {sub_id}")
    printed = consumer.printed()
    for sub_id in sub_ids:
        problem = applied_problem(printed.get(sub_id, []), {sub_id: lasts[sub_id]})
        if problem:
            raise DemoFailed(problem)
    for sub_id in sub_ids:
        theirs = current_events(api, sub_id)
        ours = {i: str(e.get("summary")) for i, e in consumer.store.events(sub_id).items()}
        if ours != theirs:
            raise DemoFailed(f"the consumer's copy of subscription {sub_id} differs from "
                             f"calsync's: {sorted(ours.items())} vs {sorted(theirs.items())}")
        counts = Counter(e["kind"] for e in feed(api, sub_id))
        made_of = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        story.say(f"{names.get(sub_id, '?'):<12} {sub_id[:8]}: seq 1..{lasts[sub_id]} "
                  f"applied once each, in order ({made_of}); "
                  f"the app's copy = calsync's {_events(len(theirs))}")


def applied_problem(printed: list[tuple[str, int]], lasts: dict[str, int]) -> str | None:
    """What is wrong with the consumer's lines for the subscriptions whose ids
    are read together (`lasts`: id -> the feed's last seq); None if each
    seq was applied once and, for one subscription alone, in order."""
    if len(lasts) == 1:
        [(sub_id, last)] = lasts.items()
        # From the last bootstrap on, if the consumer had to bootstrap.
        boots = [i for i, (what, _) in enumerate(printed) if what == "bootstrap"]
        start = printed[boots[-1]][1] if boots else 0
        seen = [n for _, n in printed[boots[-1] + 1 if boots else 0:]]
        if seen != list(range(start + 1, last + 1)):
            return (f"the consumer applied subscription {sub_id}'s seqs {seen}, not "
                    f"{start + 1}..{last} once each in order")
        return None
    # Lines of several subscriptions read together (the consumer prints each id in
    # full, so the demo passes one at a time): only "each seq once" can be checked.
    want = Counter(n for last in lasts.values() for n in range(1, last + 1))
    if Counter(n for what, n in printed if what == "seq") != want:
        return (f"the consumer's lines for {sorted(lasts)} (read together) are not "
                f"each of their seqs once")
    return None


def _events(count: int) -> str:
    return f"{count} event" + ("" if count == 1 else "s")
