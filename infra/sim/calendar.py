"""A fake Google Calendar: events per calendar, sync tokens, watch channels, pushes, quotas.

What it reproduces of `../shared/calendar-api.md`:

- `events.list` with and without a sync token, paged at `maxResults` (2,500 at
  most); with a token every event changed since comes back (deletions as
  `cancelled` items); without, only live events. The next sync token is the
  calendar's change counter. A token is refused with 410 `fullSyncRequired`
  (Google's body) at the configured rate, per incremental listing.
- `events.watch`: a channel on the calendar's resource id, expiring after the
  requested TTL but at most 7 days; a `sync` push first. `channels.stop`: 204,
  404 for a channel it does not know.
- Every change to a calendar pushes `exists` to each of its live channels,
  dropped, duplicated or delayed at the configured rates (`PushFaults`).
- Quotas: the Calendar emulator's own `Quotas` (per project and per user per
  project, sliding 60 s windows, the per-user limit checked first, refused
  requests not counted in the window), on the virtual clock. Every call is one
  request: list pages, watch and stop alike.

Errors are raised as the emulator's `ApiError` (status and Google's body);
`infra.sim.ports` turns them into the exceptions `functions.errors` defines,
through the real Calendar adapter's `classify`.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from infra.calendar_emulator.errors import ApiError, full_sync_required, not_found
from infra.calendar_emulator.quotas import Quotas, QuotaSettings
from infra.sim.clock import EventLoop, QuotaClock, VirtualClock
from infra.sim.meter import Timeline

MAX_PAGE_SIZE = 2500
MAX_CHANNEL_TTL = 604800  # Google's maximum for calendar channels: 7 days
PROJECT = "calsync-sim"


@dataclass(frozen=True)
class PushFaults:
    """How Google's push notifications misbehave (calendar-api.md section 3)."""

    drop: float = 0.0  # fraction of notifications never sent
    duplicate: float = 0.0  # fraction sent twice
    delay: float = 0.0  # fraction held back by `late_seconds` more
    latency_seconds: float = 1.0  # mean delivery latency (exponential)
    late_seconds: tuple[float, float] = (60.0, 600.0)  # extra delay of a late one


@dataclass
class FakeCalendarSettings:
    push: PushFaults = field(default_factory=PushFaults)
    sync_token_410_rate: float = 0.0  # per incremental listing
    project_per_minute: int | None = None
    user_per_minute: int | None = None
    project_status: int = 403


@dataclass
class _Calendar:
    id: str
    owner: str
    resource_id: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    log_versions: list[int] = field(default_factory=list)  # ascending
    log_ids: list[str] = field(default_factory=list)
    version: int = 0
    channels: set[str] = field(default_factory=set)


@dataclass
class _Channel:
    id: str
    calendar_id: str
    resource_id: str
    token: str
    address: str
    expiration: float  # virtual seconds
    stopped: bool = False
    message_number: int = 1
    headers: dict[str, str] = field(default_factory=dict)  # the fixed X-Goog-* headers


@dataclass(frozen=True)
class Push:
    """One notification as Google sends it: the X-Goog-* headers."""

    channel_id: str
    headers: dict[str, str]


class CallLog:
    """Every Calendar request: per minute (project), per user, per calendar."""

    def __init__(self) -> None:
        self.requests = Timeline()
        self.refused = Timeline()
        self.by_method: dict[str, int] = {}
        self.method_timelines: dict[str, Timeline] = {}  # what the peak minute was made of
        self.by_calendar: dict[str, int] = {}
        self.user_peaks: dict[str, _Peak] = {}
        self.refusals_by_reason: dict[str, int] = {}

    def record(self, t: float, owner: str, calendar_id: str, method: str,
               refused: ApiError | None) -> None:
        self.requests.add(t)
        self.by_method[method] = self.by_method.get(method, 0) + 1
        timeline = self.method_timelines.get(method)
        if timeline is None:
            timeline = self.method_timelines[method] = Timeline()
        timeline.add(t)
        self.by_calendar[calendar_id] = self.by_calendar.get(calendar_id, 0) + 1
        peak = self.user_peaks.get(owner)
        if peak is None:
            peak = self.user_peaks[owner] = _Peak()
        peak.add(t)
        if refused is not None:
            self.refused.add(t)
            key = f"{refused.code} {refused.reason}"
            self.refusals_by_reason[key] = self.refusals_by_reason.get(key, 0) + 1

    def hottest_user(self) -> tuple[str, int]:
        best = ("", 0)
        for owner, peak in self.user_peaks.items():
            if peak.max_minute > best[1]:
                best = (owner, peak.max_minute)
        return best


class _Peak:
    """Most requests in one fixed minute so far."""

    __slots__ = ("minute", "count", "max_minute")

    def __init__(self) -> None:
        self.minute, self.count, self.max_minute = -1, 0, 0

    def add(self, t: float) -> None:
        minute = int(t // 60)
        if minute != self.minute:
            self.minute, self.count = minute, 0
        self.count += 1
        if self.count > self.max_minute:
            self.max_minute = self.count


class FakeCalendar:
    """Google's side of the world: calendars, channels, pushes, quotas."""

    def __init__(self, loop: EventLoop, settings: FakeCalendarSettings, rng: random.Random,
                 deliver: Callable[[Push], None]) -> None:
        self.loop = loop
        self.clock: VirtualClock = loop.clock
        self.settings = settings
        self.rng = rng
        self.deliver = deliver
        self.calendars: dict[str, _Calendar] = {}
        self.channels: dict[str, _Channel] = {}
        self.quotas = Quotas(QuotaClock(self.clock), QuotaSettings(
            project_per_minute=settings.project_per_minute,
            user_per_minute=settings.user_per_minute,
            project_status=settings.project_status))
        self.calls = CallLog()
        self.counting = True  # off while the world is seeded
        self._counter = 0  # every change, across calendars: etags and sync tokens
        self.pushes = {"sent": 0, "dropped": 0, "duplicated": 0, "late": 0, "expired": 0}
        # Observers of changes made (the staleness probe): (calendar, event id, version, t).
        self.on_change: list[Callable[[str, str, int, float], None]] = []

    # -- set-up and the workload ---------------------------------------------------

    def add_calendar(self, calendar_id: str, owner: str) -> None:
        self.calendars[calendar_id] = _Calendar(calendar_id, owner, f"res-{calendar_id}")

    def seed_channel(self, calendar_id: str, channel_id: str, token: str, address: str,
                     expiration: float) -> None:
        """A channel opened before the simulation started (no request, no `sync` push)."""
        calendar = self.calendars[calendar_id]
        self.channels[channel_id] = _Channel(channel_id, calendar_id, calendar.resource_id,
                                             token, address, expiration)
        calendar.channels.add(channel_id)

    def sync_token(self, calendar_id: str) -> str:
        """The token a listing right now would end with."""
        return _token(calendar_id, self.calendars[calendar_id].version)

    def write_event(self, calendar_id: str, event_id: str | None = None,
                    delete: bool = False) -> str:
        """Create (no id), update or delete an event; pushes to the calendar's channels."""
        calendar = self.calendars[calendar_id]
        self._counter += 1
        version = self._counter
        now = self.clock.now()
        if event_id is None:
            event_id = f"e{version:x}"
        previous = calendar.events.get(event_id)
        if delete:
            event = {"id": event_id, "status": "cancelled", "etag": f'"{version}"'}
        else:
            # A new dict each time: stored snapshots may share the old one (seeding).
            event = {"kind": "calendar#event", "id": event_id, "status": "confirmed",
                     "etag": f'"{version}"', "summary": f"change {version}",
                     "updated": now.isoformat(),
                     "sequence": (previous or {}).get("sequence", -1) + 1}
        calendar.events[event_id] = event
        calendar.version = version
        calendar.log_versions.append(version)
        calendar.log_ids.append(event_id)
        for observer in self.on_change:
            observer(calendar_id, event_id, version, self.clock.t)
        self._push_all(calendar, now)
        return event_id

    def live_event_ids(self, calendar_id: str) -> list[str]:
        return [i for i, e in self.calendars[calendar_id].events.items()
                if e.get("status") != "cancelled"]

    # -- the API ------------------------------------------------------------------

    def _admit(self, calendar_id: str, user: str, method: str) -> None:
        refused: ApiError | None = None
        try:
            self.quotas.admit(PROJECT, user)
        except ApiError as err:
            refused = err
        if self.counting:
            self.calls.record(self.clock.t, user, calendar_id, method, refused)
        if refused is not None:
            raise refused

    def list_events(self, user: str, calendar_id: str, *, sync_token: str | None,
                    page_token: str | None, max_results: int) -> dict[str, Any]:
        """`events.list` as Google answers it (a dict like the JSON body)."""
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise not_found()
        self._admit(calendar_id, user, "events.list")
        size = max(1, min(max_results, MAX_PAGE_SIZE))
        offset = 0
        if page_token:
            offset = int(page_token.split(":")[1])
        if sync_token:
            since = _token_version(sync_token, calendar_id)
            if since is None or (page_token is None and self.rng.random()
                                 < self.settings.sync_token_410_rate):
                raise full_sync_required()
            start = bisect.bisect_right(calendar.log_versions, since)
            ids = list(dict.fromkeys(reversed(calendar.log_ids[start:])))
            ids.sort()
        else:
            ids = sorted(i for i, e in calendar.events.items() if e.get("status") != "cancelled")
        page = ids[offset:offset + size]
        body: dict[str, Any] = {"kind": "calendar#events",
                                "items": [calendar.events[i] for i in page]}
        if offset + size < len(ids):
            body["nextPageToken"] = f"p:{offset + size}"
        else:
            body["nextSyncToken"] = _token(calendar_id, calendar.version)
        return body

    def watch(self, user: str, calendar_id: str, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> dict[str, Any]:
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            raise not_found()
        self._admit(calendar_id, user, "events.watch")
        if channel_id in self.channels:
            raise ApiError(400, "channelIdNotUnique", "Channel id not unique")
        ttl = min(max(int(ttl_seconds), 1), MAX_CHANNEL_TTL)
        channel = _Channel(channel_id, calendar_id, calendar.resource_id, token, address,
                           self.clock.t + ttl)
        self.channels[channel_id] = channel
        calendar.channels.add(channel_id)
        self._push(channel, "sync", self.clock.now())
        expiration_ms = int((self.clock.start_ts + channel.expiration) * 1000)
        return {"kind": "api#channel", "id": channel_id, "resourceId": calendar.resource_id,
                "resourceUri": f"https://www.googleapis.com/calendar/v3/calendars/"
                               f"{calendar_id}/events?alt=json",
                "token": token, "expiration": str(expiration_ms)}

    def stop(self, user: str, channel_id: str, resource_id: str) -> None:
        channel = self.channels.get(channel_id)
        self._admit(channel.calendar_id if channel else "-", user, "channels.stop")
        if channel is None or channel.resource_id != resource_id or channel.stopped:
            raise not_found("Channel not found")
        channel.stopped = True
        self.calendars[channel.calendar_id].channels.discard(channel_id)

    # -- pushes ---------------------------------------------------------------------

    def _push_all(self, calendar: _Calendar, now: datetime) -> None:
        for channel_id in list(calendar.channels):
            channel = self.channels[channel_id]
            if channel.expiration <= self.clock.t:
                calendar.channels.discard(channel_id)  # expired: Google forgets it
                if self.counting:
                    self.pushes["expired"] += 1
                continue
            self._push(channel, "exists", now)

    def _push(self, channel: _Channel, state: str, now: datetime) -> None:
        faults = self.settings.push
        rng = self.rng
        channel.message_number += 1 + rng.randrange(3)  # increasing, not consecutive
        if self.counting:
            self.pushes["sent"] += 1
        if rng.random() < faults.drop:
            if self.counting:
                self.pushes["dropped"] += 1
            return
        copies = 2 if rng.random() < faults.duplicate else 1
        if copies == 2 and self.counting:
            self.pushes["duplicated"] += 1
        if not channel.headers:
            expiration = self.clock.start + timedelta(seconds=channel.expiration)
            channel.headers = {
                "X-Goog-Channel-ID": channel.id,
                "X-Goog-Resource-ID": channel.resource_id,
                "X-Goog-Resource-URI": f"https://www.googleapis.com/calendar/v3/calendars/"
                                       f"{channel.calendar_id}/events?alt=json",
                "X-Goog-Channel-Expiration": expiration.strftime("%a, %d %b %Y %H:%M:%S GMT"),
                "X-Goog-Channel-Token": channel.token,
            }
        headers = {**channel.headers, "X-Goog-Resource-State": state,
                   "X-Goog-Message-Number": str(channel.message_number)}
        for _ in range(copies):
            delay = rng.expovariate(1.0 / faults.latency_seconds) if faults.latency_seconds else 0.0
            if rng.random() < faults.delay:
                delay += rng.uniform(*faults.late_seconds)
                if self.counting:
                    self.pushes["late"] += 1
            self.loop.after(delay, self.deliver, Push(channel.id, headers))


def _token(calendar_id: str, version: int) -> str:
    return f"st:{calendar_id}:{version}"


def _token_version(token: str, calendar_id: str) -> int | None:
    prefix = f"st:{calendar_id}:"
    if not token.startswith(prefix):
        return None
    try:
        return int(token[len(prefix):])
    except ValueError:
        return None
