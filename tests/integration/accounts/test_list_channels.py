"""Calendar-list channels against the emulator (DESIGN.md, "Channels": both kinds): the
webhook routes a list notification to an account request, coalesced like a
subscription's; the renewer renews a list channel before it expires and retries a
failed watch with backoff, leaving exactly one delivering channel."""

from __future__ import annotations

from datetime import timedelta

from functions.intake import channel_tokens
from functions.intake.webhook import Notification
from tests.integration.accounts.conftest import ANN, BOB, KEY, World


def _connected(world: World) -> str:
    world.control.add_user(ANN)
    account_id = world.account_service.connect(ANN, world.grant(ANN)).account.id
    world.drain()
    return account_id


def test_a_list_notification_becomes_one_account_task(world: World) -> None:
    account_id = _connected(world)
    channel = world.list_channel(account_id)
    token = channel_tokens.sign(channel.id, world.settings.channel_token_keys)
    note = Notification(channel.id, str(channel.resource_id), "exists", 7, token)
    first = world.webhook.handle(note)
    second = world.webhook.handle(note)  # coalesced: the request is pending
    assert (first.status, first.result, second.result) == (200, "queued", "coalesced")
    assert first.sub_id == f"account:{account_id}"
    names = [name for name, _, _ in world.queue.tasks]
    assert len(names) == 1 and names[0].startswith("list-request-")
    # A forged token costs nothing; a wrong resource id is refused.
    assert world.webhook.handle(Notification(channel.id, "r", "exists", 8, "bad")).status == 403
    wrong = Notification(channel.id, "other-resource", "exists", 9, token)
    assert world.webhook.handle(wrong).status == 403
    world.drain()
    assert world.accounts.get(account_id)[1]["last_notification_at"] is not None


def test_the_renewer_renews_a_list_channel_before_it_expires(world: World) -> None:
    account_id = _connected(world)
    old = world.list_channel(account_id)
    assert old.expiration is not None
    world.clock[0] = old.expiration - timedelta(hours=12)  # inside the renewal window
    report = world.renewer().run()
    # The list channel and the primary calendar's channel (both due) are renewed.
    assert report.renewed == 2 and not report.errors, report
    new = world.list_channel(account_id)
    assert new.id != old.id and new.state == "active" and new.kind == "calendar_list"
    assert world.db.document(f"channels/{old.id}").get().to_dict()["state"] == "stopped"
    on_google = {c["id"]: c for c in world.control.channels()}
    assert on_google[old.id]["stopped"] and not on_google[new.id].get("stopped")
    assert world.accounts.get(account_id)[1]["channel_id"] == new.id
    # The new channel delivers: a share reaches the account through it.
    shared = world.control.create_calendar(BOB, summary="Team")["id"]
    world.control.share_calendar(shared, ANN, "reader")
    world.drain()
    assert shared in world.followed(account_id)


def test_a_failed_list_watch_is_retried_with_backoff(world: World) -> None:
    account_id = _connected(world)
    old = world.list_channel(account_id)
    assert old.expiration is not None
    world.clock[0] = old.expiration - timedelta(hours=12)
    world.control.inject_failure("calendarList.watch", 503, "backendError", count=2)
    report = world.renewer().run()
    assert report.failed == 1 and report.renewed == 1  # the list's failed, the events' not
    states = {c.id: c.state for c in world.accounts.channels_of(account_id)}
    assert states[old.id] == "replaced"  # still accepted until it expires
    [pending] = [c for c in world.accounts.delivering_channels(account_id)]
    doc = world.db.document(f"channels/{pending.id}").get().to_dict()
    assert pending.state == "pending" and doc["renewal_attempts"] == 1
    assert doc["kind"] == "calendar_list" and doc["account_id"] == account_id
    first_due = doc["next_attempt_at"]

    # Due again at its backoff: fails once more, the backoff doubles.
    world.clock[0] = max(world.clock[0], first_due) + timedelta(seconds=1)
    world.renewer().run()
    [pending] = world.accounts.delivering_channels(account_id)
    doc = world.db.document(f"channels/{pending.id}").get().to_dict()
    assert doc["renewal_attempts"] == 2
    assert doc["next_attempt_at"] - world.clock[0] > timedelta(seconds=100)  # 60 s, doubled

    # Then it opens: one active channel, and a listing requested for the gap.
    world.clock[0] = max(world.clock[0], doc["next_attempt_at"]) + timedelta(seconds=1)
    world.queue.tasks.clear()
    report = world.renewer().run()
    assert report.renewed >= 1 and report.failed == 0, report
    new = world.list_channel(account_id)
    assert new.state == "active" and new.id not in (old.id, pending.id)
    # (Coalesced with the safety net's request, which the virtual days made due.)
    requested = world.accounts.get(account_id)[0].requested_gen
    assert requested > int(world.accounts.writer_state(account_id).get("synced_gen") or 0)
    assert any(name.startswith("list-") for name, _, _ in world.queue.tasks)
    world.drain()
    assert int(world.accounts.writer_state(account_id)["synced_gen"]) >= requested


def test_a_list_channel_of_a_deleted_account_is_stopped_by_the_renewer(world: World) -> None:
    account_id = _connected(world)
    channel = world.list_channel(account_id)
    # The account document gone without its channels (a deletion interrupted midway).
    world.db.document(f"accounts/{account_id}").delete()
    assert channel.expiration is not None
    world.clock[0] = channel.expiration - timedelta(hours=1)
    report = world.renewer().run()
    assert report.orphans_stopped == 1
    assert world.db.document(f"channels/{channel.id}").get().to_dict()["state"] == "stopped"


assert KEY  # the channel-token key the world signs with
