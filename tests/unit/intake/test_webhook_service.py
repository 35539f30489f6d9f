"""Webhook decisions against in-memory fakes of our own ports (pure logic)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from functions.errors import QueueUnavailable, ResourceMismatch, StoreUnavailable
from functions.intake import channel_tokens
from functions.intake.webhook import (
    BadNotification,
    Notification,
    WebhookService,
    parse_notification,
)
from functions.model import Channel, SyncRequest
from functions.ports import ChannelStore, RequestStore, TaskQueue

KEYS = {"k1": b"s" * 32}
T0 = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class FakeChannels(ChannelStore):
    """Channels with Firestore's semantics that matter here: every write moves the
    document's version, and record_notification is conditional on it."""

    def __init__(self) -> None:
        self.channels: dict[str, Channel] = {}
        self.recorded: list[tuple[str, int]] = []
        self.reads = 0
        self.lost_races = 0
        self.fail_record = False
        self._tick = 0

    def put(self, channel: Channel) -> None:
        self._tick += 1
        version = T0 + timedelta(microseconds=self._tick)
        self.channels[channel.id] = replace(channel, version=version)

    def get_channel(self, channel_id: str) -> Channel | None:
        self.reads += 1
        return self.channels.get(channel_id)

    def learn_resource_id(self, channel_id: str, resource_id: str) -> None:
        known = self.channels[channel_id].resource_id
        if known is not None and known != resource_id:
            raise ResourceMismatch(channel_id)
        if known is None:
            self.put(replace(self.channels[channel_id], resource_id=resource_id))

    def record_notification(self, channel: Channel, message_number: int,
                            now: datetime) -> datetime | None:
        if self.fail_record:
            raise StoreUnavailable("firestore down")
        stored = self.channels.get(channel.id)
        if stored is None or (channel.version is not None and stored.version != channel.version):
            self.lost_races += 1
            return None
        self.recorded.append((channel.id, message_number))
        self.put(replace(stored, last_notification_at=now, last_message_number=message_number))
        return self.channels[channel.id].version


class FakeRequests(RequestStore):
    def __init__(self) -> None:
        self.calls = 0
        self.requested = 0
        self.claimed = 0
        self.queued: list[int] = []
        self.exists = True
        self.last_run: datetime | None = None
        self.failed: set[int] = set()

    def record_sync_request(self, sub_id: str, now: datetime) -> SyncRequest:
        self.calls += 1
        if not self.exists:
            return SyncRequest(found=False, needs_task=False)
        if self.requested > self.claimed:
            # Pending: a task is needed again only after a failed enqueue.
            needs = self.requested in self.failed and self.requested not in self.queued
            self.failed.discard(self.requested)
            return SyncRequest(found=True, needs_task=needs, generation=self.requested)
        self.requested += 1
        return SyncRequest(found=True, needs_task=True, generation=self.requested,
                           last_run_started_at=self.last_run)

    def mark_queued(self, sub_id: str, generation: int, now: datetime) -> None:
        self.queued.append(generation)

    def enqueue_failed(self, sub_id: str, generation: int) -> None:
        self.failed.add(generation)

    def request_full_resync(self, sub_id: str) -> int:
        raise AssertionError("the webhook never asks for a full resync")


class FakeQueue(TaskQueue):
    def __init__(self) -> None:
        self.tasks: list[tuple[str, int, str]] = []
        self.not_before: list[datetime | None] = []
        self.fail = False

    def enqueue_sync(self, sub_id, generation, not_before=None, *, origin="request"):  # type: ignore[no-untyped-def]
        if self.fail:
            raise QueueUnavailable("down")
        self.tasks.append((sub_id, generation, origin))
        self.not_before.append(not_before)


@pytest.fixture
def world() -> tuple[WebhookService, FakeChannels, FakeRequests, FakeQueue, list[datetime]]:
    channels, requests, queue = FakeChannels(), FakeRequests(), FakeQueue()
    channels.put(Channel("ch-1", "sub-1", "active", resource_id="res-1"))
    clock = [T0]
    service = WebhookService(channels, requests, queue, KEYS, record_interval=5,
                             min_sync_interval=2, clock=lambda: clock[0])
    return service, channels, requests, queue, clock


def note(state: str = "exists", channel: str = "ch-1", resource: str = "res-1",
         number: int = 2, token: str | None = "auto") -> Notification:
    if token == "auto":
        token = channel_tokens.sign(channel, KEYS)
    return Notification(channel, resource, state, number, token)


def test_exists_queues_one_task_and_then_coalesces(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, queue, _ = world
    first = service.handle(note())
    assert (first.status, first.result) == (200, "queued")
    assert queue.tasks == [("sub-1", 1, "request")] and requests.queued == [1]
    for n in range(3, 50):
        assert service.handle(note(number=n)).result == "coalesced"
    assert len(queue.tasks) == 1


def test_after_the_run_claims_a_new_notification_queues_again(world) -> None:  # type: ignore[no-untyped-def]
    service, _, requests, queue, _ = world
    service.handle(note())
    requests.claimed = requests.requested
    assert service.handle(note(number=9)).result == "queued"
    assert [t[1] for t in queue.tasks] == [1, 2]


@pytest.mark.parametrize("token", [None, "", "v1.k1.forged", channel_tokens.sign("ch-2", KEYS),
                                   channel_tokens.sign("ch-1", {"k1": b"x" * 32})])
def test_bad_token_is_403_and_records_nothing(world, token) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, queue, _ = world
    outcome = service.handle(note(token=token))
    assert outcome.status == 403
    assert requests.requested == 0 and not queue.tasks and not channels.recorded


@pytest.mark.parametrize("channel", ["ch-1", "ch-unknown"])
@pytest.mark.parametrize("token", [None, "", "v1.k1.forged", "v1.k9.forged", "garbage",
                                   channel_tokens.sign("ch-2", KEYS),
                                   channel_tokens.sign("ch-1", {"k1": b"x" * 32})])
def test_forged_notification_costs_no_read(world, channel, token) -> None:  # type: ignore[no-untyped-def]
    """Known channel or not, a missing or wrong token is refused before any lookup."""
    service, channels, requests, queue, _ = world
    if token == channel_tokens.sign("ch-2", KEYS) and channel == "ch-unknown":
        token = channel_tokens.sign("ch-1", KEYS)  # a real token, of another channel
    outcome = service.handle(note(channel=channel, token=token))
    assert (outcome.status, outcome.result) == (403, "rejected_token")
    assert outcome.reason == ("missing X-Goog-Channel-Token" if not token
                              else "channel token does not verify")
    assert channels.reads == 0 and requests.calls == 0
    assert outcome.writes == 0 and not queue.tasks and not channels.recorded


def test_forged_traffic_on_a_cached_channel_still_costs_nothing(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, _, _ = world
    assert service.handle(note()).result == "queued"
    reads, calls = channels.reads, requests.calls
    for n in range(3, 30):
        assert service.handle(note(number=n, token="v1.k1.nope")).status == 403
    assert (channels.reads, requests.calls) == (reads, calls)


def test_signed_notification_for_an_unknown_channel_reads_once_and_is_acknowledged(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, _, _ = world
    outcome = service.handle(note(channel="ch-gone"))
    assert (outcome.status, outcome.result) == (200, "ignored_unknown_channel")
    assert channels.reads == 1 and requests.calls == 0


def test_wrong_resource_id_is_403_and_records_nothing(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, queue, _ = world
    assert service.handle(note(resource="res-other")).status == 403
    assert requests.requested == 0 and not queue.tasks and not channels.recorded


def test_unknown_channel_is_acknowledged_and_ignored(world) -> None:  # type: ignore[no-untyped-def]
    service, _, requests, queue, _ = world
    outcome = service.handle(note(channel="ch-unknown"))
    assert (outcome.status, outcome.result) == (200, "ignored_unknown_channel")
    assert requests.requested == 0 and not queue.tasks


def test_abandoned_channels_are_ignored(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, queue, _ = world
    channels.put(replace(channels.channels["ch-1"], state="abandoned"))
    assert service.handle(note()).status == 200
    assert requests.requested == 0 and not queue.tasks


def test_a_late_push_on_a_stopped_channel_still_asks_for_a_sync(world) -> None:  # type: ignore[no-untyped-def]
    """A push sent before the channel's stop and delivered after it may be the only
    announcement of its change (the renewal's new channel was opened after it)."""
    service, channels, requests, queue, _ = world
    channels.put(replace(channels.channels["ch-1"], state="stopped"))
    outcome = service.handle(note())
    assert (outcome.status, outcome.result) == (200, "queued")
    assert requests.requested == 1 and len(queue.tasks) == 1
    # The request and its queued mark; no bookkeeping on a stopped channel.
    assert outcome.writes == 2 and channels.channels["ch-1"].last_notification_at is None


def test_replaced_channel_still_delivers_during_the_overlap(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, _, queue, _ = world
    channels.put(replace(channels.channels["ch-1"], state="replaced"))
    assert service.handle(note()).result == "queued"


def test_pending_channel_learns_its_resource_id_from_the_first_message(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, queue, _ = world
    channels.put(Channel("ch-p", "sub-1", "pending"))
    outcome = service.handle(note("sync", channel="ch-p", resource="res-p", number=1))
    assert (outcome.status, outcome.result) == (200, "sync_message")
    assert channels.channels["ch-p"].resource_id == "res-p"
    assert requests.requested == 0 and not queue.tasks
    assert service.handle(note(channel="ch-p", resource="res-x")).status == 403


def test_enqueue_failure_answers_503_so_google_redelivers(world) -> None:  # type: ignore[no-untyped-def]
    service, _, requests, queue, _ = world
    queue.fail = True
    outcome = service.handle(note())
    assert (outcome.status, outcome.result) == (503, "enqueue_failed")
    assert requests.requested == 1 and requests.queued == [] and requests.failed == {1}
    queue.fail = False
    redelivered = service.handle(note())  # Google retries the 503: now it queues
    assert (redelivered.status, redelivered.result) == (200, "queued")
    assert requests.requested == 1 and requests.queued == [1]


def test_gone_subscription_is_acknowledged(world) -> None:  # type: ignore[no-untyped-def]
    service, _, requests, queue, _ = world
    requests.exists = False
    assert service.handle(note()).result == "ignored_no_subscription"
    assert not queue.tasks


def test_last_notification_is_written_at_most_every_interval(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, _, _, clock = world
    for n in range(2, 40):
        clock[0] = T0 + timedelta(seconds=n * 0.25)
        service.handle(note(number=n))
    # 38 notifications over ~9.5 s with a 5 s interval: at most 2 writes
    assert 1 <= len(channels.recorded) <= 2


def test_last_notification_is_rate_limited_per_channel_across_instances(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Four instances share one store: the channel is written about once per interval."""
    from functions.intake import webhook

    _, channels, requests, queue, clock = world
    tick = [1000.0]
    monkeypatch.setattr(webhook.time, "monotonic", lambda: tick[0])
    instances = [WebhookService(channels, requests, queue, KEYS, record_interval=5,
                                min_sync_interval=2, clock=lambda: clock[0]) for _ in range(4)]
    channels.put(replace(channels.channels["ch-1"],
                         last_notification_at=T0 - timedelta(seconds=4)))
    writes_at: list[datetime] = []
    for n in range(400):  # 20 s of notifications, round-robin over the instances
        clock[0] = T0 + timedelta(seconds=n * 0.05)
        tick[0] = 1000.0 + n * 0.05
        before = len(channels.recorded)
        outcome = instances[n % 4].handle(note(number=n + 2))
        assert outcome.status == 200
        if len(channels.recorded) > before:
            writes_at.append(clock[0])
    # Every instance cached the channel at T0, and all four find it due at
    # T0+1 s: one write wins, the other three lose the conditional write.
    # 20 s, 5 s interval: 4 or 5 writes, never two within one interval.
    assert writes_at[0] == T0 + timedelta(seconds=1)
    assert 4 <= len(writes_at) <= 5
    gaps = [b - a for a, b in zip(writes_at, writes_at[1:], strict=False)]
    assert all(gap >= timedelta(seconds=5) for gap in gaps)
    assert channels.lost_races >= 3
    assert channels.channels["ch-1"].last_message_number == channels.recorded[-1][1]


def test_failing_bookkeeping_never_fails_the_notification(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, _, queue, _ = world
    channels.fail_record = True
    outcome = service.handle(note())
    assert (outcome.status, outcome.result) == (200, "queued") and len(queue.tasks) == 1
    assert not channels.recorded


def test_the_learning_notification_is_recorded_too(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, _, _, _ = world
    channels.put(Channel("ch-p", "sub-1", "pending"))
    service.handle(note("sync", channel="ch-p", resource="res-p", number=1))
    assert channels.recorded == [("ch-p", 1)]


GOOD = {"X-Goog-Channel-ID": "ch-1", "X-Goog-Resource-ID": "res-1",
        "X-Goog-Resource-State": "exists", "X-Goog-Message-Number": "17",
        "X-Goog-Channel-Token": "v1.k1.abc"}


def test_parse_accepts_googles_headers() -> None:
    parsed = parse_notification("POST", GOOD)
    assert parsed == Notification("ch-1", "res-1", "exists", 17, "v1.k1.abc")
    assert parse_notification("POST", {**GOOD, "X-Goog-Resource-State": "not_exists"})
    top = parse_notification("POST", {**GOOD, "X-Goog-Message-Number": str(2**63 - 1)})
    assert top.message_number == 2**63 - 1


@pytest.mark.parametrize(("change", "reason"), [
    ({"X-Goog-Channel-ID": None}, "missing X-Goog-Channel-ID"),
    ({"X-Goog-Resource-State": None}, "missing X-Goog-Resource-State"),
    ({"X-Goog-Resource-State": "deleted"}, "unknown X-Goog-Resource-State"),
    ({"X-Goog-Resource-ID": None}, "missing X-Goog-Resource-ID"),
    ({"X-Goog-Message-Number": None}, "missing X-Goog-Message-Number"),
    ({"X-Goog-Message-Number": "seven"}, "malformed X-Goog-Message-Number"),
    ({"X-Goog-Message-Number": "-1"}, "malformed X-Goog-Message-Number"),
    ({"X-Goog-Message-Number": str(2**63)}, "X-Goog-Message-Number out of range"),
    ({"X-Goog-Message-Number": "18446744073709551615"}, "X-Goog-Message-Number out of range"),
    ({"X-Goog-Message-Number": "1" * 21}, "malformed X-Goog-Message-Number"),
    ({"X-Goog-Channel-ID": "has space"}, "malformed X-Goog-Channel-ID"),
])
def test_parse_rejects_missing_or_malformed_headers(change, reason) -> None:  # type: ignore[no-untyped-def]
    headers = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    with pytest.raises(BadNotification, match=reason):
        parse_notification("POST", headers)


def test_task_waits_for_min_sync_interval_after_the_last_run_started(world) -> None:  # type: ignore[no-untyped-def]
    service, _, requests, queue, clock = world
    requests.last_run = T0 - timedelta(seconds=0.5)
    service.handle(note())
    assert queue.not_before == [T0 + timedelta(seconds=1.5)]
    requests.claimed = requests.requested
    requests.last_run = T0 - timedelta(seconds=10)
    service.handle(note(number=5))
    assert queue.not_before[-1] is None  # long enough ago: run at once


def test_confirmed_channels_are_looked_up_once_per_cache_period(world, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from functions.intake import webhook

    service, channels, _, _, _ = world
    lookups: list[str] = []
    original = channels.get_channel
    channels.get_channel = lambda cid: (lookups.append(cid), original(cid))[1]  # type: ignore[method-assign]
    tick = [1000.0]
    monkeypatch.setattr(webhook.time, "monotonic", lambda: tick[0])
    for n in range(2, 12):
        service.handle(note(number=n))
    assert lookups == ["ch-1"]
    tick[0] += 5.0 + 0.1  # the default CALSYNC_CHANNEL_CACHE_SECONDS
    service.handle(note(number=20))
    assert lookups == ["ch-1", "ch-1"]
    service._cache_seconds = 60.0  # the setting decides how long
    tick[0] += 30.0
    service.handle(note(number=21))
    assert lookups == ["ch-1", "ch-1", "ch-1"]
    tick[0] += 30.0
    service.handle(note(number=22))
    assert lookups == ["ch-1", "ch-1", "ch-1"]


def test_pending_channels_are_never_cached(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, _, _, _ = world
    channels.put(Channel("ch-p", "sub-1", "pending"))
    service.handle(note("sync", channel="ch-p", resource="res-p", number=1))
    channels.put(replace(channels.channels["ch-p"], resource_id="res-q"))
    # The learnt resource id is read again, not served from a cache.
    assert service.handle(note(channel="ch-p", resource="res-p")).status == 403


def test_a_failed_reread_after_learning_skips_only_the_bookkeeping(world) -> None:  # type: ignore[no-untyped-def]
    service, channels, requests, queue, _ = world
    channels.put(Channel("ch-p", "sub-1", "pending"))
    original = channels.learn_resource_id

    def learn_then_fail_reads(channel_id: str, resource_id: str) -> None:
        original(channel_id, resource_id)

        def down(cid: str) -> Channel | None:
            raise StoreUnavailable("firestore down")

        channels.get_channel = down  # type: ignore[method-assign]

    channels.learn_resource_id = learn_then_fail_reads  # type: ignore[method-assign]
    outcome = service.handle(note(channel="ch-p", resource="res-p"))
    assert (outcome.status, outcome.result) == (200, "queued") and len(queue.tasks) == 1
    assert channels.channels["ch-p"].resource_id == "res-p" and not channels.recorded
