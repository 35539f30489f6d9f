"""Issue 21, item 5: only real progress continues the renewer, one task chain per
stuck request, permanent errors end in `error` after a bounded number of attempts,
abandoned channel records are cleaned up, and a channel TTL inside the renewal
window is refused."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from functions.config import RENEWER, WORKER, ConfigError, Settings
from functions.errors import CalendarGone, CalendarRequestRejected, CalendarUnavailable
from tests.unit.lifecycle.world import BASE_ENV, NamedQueue, World


def test_failed_renewals_are_not_progress_so_no_continuation() -> None:
    world = World(CALSYNC_SAFETY_NET_INTERVAL_SECONDS=str(30 * 86400))  # out of the way
    for n in range(5):
        world.with_channel(f"cal-{n}")
    world.advance(days=6, hours=12)
    world.watches.failures = 1000  # a Calendar outage
    report = world.renewer(batch=2).run()
    assert report.failed == 2 and report.renewed == 0
    assert not report.continued and world.continued == []


def test_a_sweep_requeue_the_queue_already_knows_is_not_progress() -> None:
    queue = NamedQueue()
    world = World(queue=queue)
    sub_id = world.subscribe("cal")  # its task is lost (ran out of attempts)
    world.advance(minutes=3)
    first = world.renewer().run()
    second = world.renewer().run()  # the same instant: the same sweep bucket
    assert first.swept == 1 and second.swept == 0
    assert queue.refused == [] and len(queue.of(sub_id)) == 2  # the first task and one sweep


def test_one_task_chain_per_stuck_request() -> None:
    """A request whose runs keep failing: the queue retries its task with a growing
    backoff (at most 600 s apart) for a while; the sweep starts no second chain while
    that one still runs, and one new chain once it has been silent for longer."""
    world = World(CALSYNC_TASK_MAX_BACKOFF_SECONDS="600")
    sub_id = world.subscribe("cal")
    world.stuck(sub_id, claimed_gen=1, synced_gen=0)
    start = world.clock[0]
    attempts = [0, 5, 15, 35, 75, 155, 315, 635, 955, 1275]  # doubling, capped, then ends
    sweeps_while_alive = []
    for second in range(0, 1276, 60):
        now = start + timedelta(seconds=second)
        world.clock[0] = now
        ran = [a for a in attempts if a <= second]
        world.db.writers[sub_id]["lease_started_at"] = start + timedelta(seconds=ran[-1])
        world.renewer().run()
        sweeps_while_alive = [o for _, o in world.queue.of(sub_id) if o.startswith("sweep")]
    assert sweeps_while_alive == []
    for _ in range(12):  # 12 more minutes: the chain has ended
        world.advance(minutes=1)
        world.renewer().run()
    sweeps = [o for _, o in world.queue.of(sub_id) if o.startswith("sweep")]
    assert len(sweeps) == 1, sweeps


def test_a_watch_refused_for_the_request_itself_ends_in_error() -> None:
    world = World(CALSYNC_GIVE_UP_ATTEMPTS="3")
    sub_id = world.subscribe("holiday")
    world.served(sub_id)
    world.watches.refused["holiday"] = CalendarRequestRejected(
        "calendar 400 pushNotSupportedForRequestedResource: push not supported")
    world.service.ensure_channel(world.sub(sub_id))  # attempt 1, by the first run
    for _ in range(8):
        world.advance(minutes=10)
        world.renewer().run()
    status = world.service.status(sub_id)
    assert status.status == "error" and "pushNotSupported" in (status.last_error or "")
    assert world.db.subs[sub_id]["last_error_reason"] == "calendar_request_rejected"
    assert len(world.watches.watched()) == 3
    assert world.db.delivering_channels(sub_id) == []


def test_a_calendar_gone_on_renewal_ends_in_error() -> None:
    world = World(CALSYNC_GIVE_UP_ATTEMPTS="2")
    sub_id, _ = world.with_channel("gone")
    world.advance(days=6, hours=12)
    world.watches.refused["gone"] = CalendarGone("calendar_not_found: calendar 404")
    for _ in range(6):
        world.renewer().run()
        world.advance(minutes=10)
    status = world.service.status(sub_id)
    assert status.status == "error"
    assert world.db.subs[sub_id]["last_error_reason"] == "calendar_not_found"
    assert len(world.watches.watched()) == 1 + 2


def test_a_transient_watch_failure_never_puts_the_subscription_in_error() -> None:
    world = World(CALSYNC_GIVE_UP_ATTEMPTS="2")
    sub_id = world.subscribe("cal")
    world.served(sub_id)
    world.watches.refused["cal"] = CalendarUnavailable("backend 503")
    world.service.ensure_channel(world.sub(sub_id))
    for _ in range(6):
        world.advance(hours=1, minutes=1)
        world.renewer().run()
    assert world.service.status(sub_id).status == "active"
    assert len(world.watches.watched()) == 7  # still retried, an hour apart at most


def test_abandoned_channel_records_are_deleted_once_expired_a_batch_per_run() -> None:
    world = World(CALSYNC_CHANNEL_RECORD_RETENTION_SECONDS="3600")
    ids = []
    for n in range(5):  # grants revoked: channels abandoned with their real expiration
        sub_id, channel_id = world.with_channel(f"cal-{n}")
        assert world.service.mark_error(world.sub(sub_id), "revoked", "reauthorization_required")
        ids.append(channel_id)
    assert all(world.db.channel_doc(c)["state"] == "abandoned" for c in ids)
    world.advance(days=7, minutes=30)
    assert world.renewer(batch=2).run().channels_deleted == 0  # kept an hour past expiry
    world.advance(minutes=31)
    deleted = [world.renewer(batch=2).run().channels_deleted for _ in range(3)]
    assert deleted == [2, 2, 1]
    assert not any(world.db.channel_doc(c) for c in ids)


def test_retried_watches_leave_no_abandoned_records_behind() -> None:
    world = World(CALSYNC_CHANNEL_RECORD_RETENTION_SECONDS="60")
    sub_id = world.subscribe("cal")
    world.served(sub_id)
    world.watches.failures = 4
    world.service.ensure_channel(world.sub(sub_id))
    for _ in range(6):  # four failed watches, then one that opens, then a quiet run
        world.advance(hours=1, minutes=1)
        world.renewer().run()
    assert [c.state for c in world.db.channels_of(sub_id)] == ["active"]


def _env(**extra: str) -> dict[str, str]:
    return {**BASE_ENV, **extra}


def test_a_channel_ttl_inside_the_renewal_window_is_refused() -> None:
    env = _env(CALSYNC_CHANNEL_TTL_SECONDS="3600", CALSYNC_RENEWAL_WINDOW_SECONDS="3600")
    for function in (None, RENEWER):
        with pytest.raises(ConfigError) as refused:
            Settings.from_env(env, function=function)
        message = str(refused.value)
        assert "CALSYNC_CHANNEL_TTL_SECONDS" in message
        assert "CALSYNC_RENEWAL_WINDOW_SECONDS" in message
    # The worker opens channels but never renews: the window is not its setting.
    assert Settings.from_env(_env(CALSYNC_CHANNEL_TTL_SECONDS="3600"), function=WORKER)
    assert Settings.from_env(_env(CALSYNC_CHANNEL_TTL_SECONDS="90000")).channel_ttl == 90000


def test_the_give_up_attempts_are_a_setting() -> None:
    key = base64.b64encode(b"k" * 32).decode()
    env = {**_env(), "CALSYNC_CHANNEL_TOKEN_KEYS": f"k:{key}", "CALSYNC_GIVE_UP_ATTEMPTS": "0"}
    with pytest.raises(ConfigError, match="CALSYNC_GIVE_UP_ATTEMPTS"):
        Settings.from_env(env)
    assert Settings.from_env({**env, "CALSYNC_GIVE_UP_ATTEMPTS": "7"}).give_up_attempts == 7
