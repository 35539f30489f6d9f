"""events.watch, channels.stop and the notifications (calendar-api.md sections 2 and 3)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from .conftest import USER, Receiver, timed


def watch(service: Any, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url, **extra}
    return dict(service.events().watch(calendarId="primary", body=body).execute())


def insert(service: Any, summary: str = "x") -> dict[str, Any]:
    return dict(
        service.events()
        .insert(
            calendarId="primary",
            body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00", summary=summary),
        )
        .execute()
    )


def states(receiver: Receiver) -> list[str]:
    return [note["x-goog-resource-state"] for note in receiver.notifications]


def test_watch_response_shape_and_sync_message(service: Any, receiver: Receiver) -> None:
    channel = watch(service, receiver, token="secret-token", params={"ttl": "3600"})
    assert set(channel) == {"kind", "id", "resourceId", "resourceUri", "token", "expiration"}
    assert channel["kind"] == "api#channel" and channel["token"] == "secret-token"
    assert isinstance(channel["expiration"], str) and channel["expiration"].isdigit()
    (sync,) = receiver.wait_for(1)
    assert sync["x-goog-resource-state"] == "sync"
    assert sync["x-goog-message-number"] == "1"
    assert sync["x-goog-channel-id"] == channel["id"]
    assert sync["x-goog-resource-id"] == channel["resourceId"]
    assert sync["x-goog-resource-uri"] == channel["resourceUri"]
    assert sync["x-goog-channel-token"] == "secret-token"
    expiry = parsedate_to_datetime(sync["x-goog-channel-expiration"])
    assert abs(expiry.timestamp() * 1000 - int(channel["expiration"])) < 1000
    assert receiver.bodies == [b""]


def test_exists_on_every_change_with_increasing_numbers(service: Any, receiver: Receiver) -> None:
    watch(service, receiver)
    receiver.wait_for(1)
    event = insert(service)
    service.events().patch(
        calendarId="primary", eventId=event["id"], body={"summary": "y"}
    ).execute()
    service.events().delete(calendarId="primary", eventId=event["id"]).execute()
    notes = receiver.wait_for(4)
    assert states(receiver) == ["sync", "exists", "exists", "exists"]
    numbers = sorted(int(note["x-goog-message-number"]) for note in notes)
    assert numbers[0] == 1 and len(set(numbers)) == 4
    assert "x-goog-channel-token" not in notes[1]


def test_message_numbers_are_not_consecutive(service: Any, receiver: Receiver) -> None:
    watch(service, receiver)
    for index in range(12):
        insert(service, str(index))
    numbers = sorted(int(note["x-goog-message-number"]) for note in receiver.wait_for(13))
    gaps = {b - a for a, b in zip(numbers, numbers[1:], strict=False)}
    assert min(gaps) >= 1 and max(gaps) > 1


def test_ttl_and_expiration_are_honoured_and_capped_at_seven_days(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    now_ms = time.time() * 1000
    channel = watch(service, receiver, params={"ttl": "60"})
    assert abs(int(channel["expiration"]) - (now_ms + 60_000)) < 5_000
    default = watch(service, receiver)
    assert abs(int(default["expiration"]) - (now_ms + 604_800_000)) < 5_000
    capped = watch(service, receiver, params={"ttl": str(30 * 86400)})
    assert abs(int(capped["expiration"]) - (now_ms + 604_800_000)) < 5_000
    explicit = watch(service, receiver, expiration=str(int(now_ms + 120_000)))
    assert abs(int(explicit["expiration"]) - (now_ms + 120_000)) < 5_000


def test_no_delivery_after_expiry(emu: Any, service: Any, receiver: Receiver) -> None:
    short = watch(service, receiver, params={"ttl": "60"})
    forced = watch(service, receiver)
    receiver.wait_for(2)
    emu.control.expire_channel(forced["id"])
    emu.control.advance_clock(120)
    insert(service)
    assert emu.control.flush_notifications()
    assert states(receiver) == ["sync", "sync"]
    channels = {channel["id"]: channel for channel in emu.control.channels()}
    assert channels[short["id"]]["expired"] and channels[forced["id"]]["expired"]


def test_stop_ends_delivery_and_unknown_channel_is_404(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    channel = watch(service, receiver)
    receiver.wait_for(1)
    result = (
        service.channels()
        .stop(body={"id": channel["id"], "resourceId": channel["resourceId"]})
        .execute()
    )
    assert result == ""
    insert(service)
    assert emu.control.flush_notifications()
    assert states(receiver) == ["sync"]
    with pytest.raises(HttpError) as caught:
        service.channels().stop(
            body={"id": "unknown", "resourceId": channel["resourceId"]}
        ).execute()
    assert caught.value.status_code == 404
    with pytest.raises(HttpError) as caught:
        service.channels().stop(
            body={"id": channel["id"], "resourceId": channel["resourceId"]}
        ).execute()
    assert caught.value.status_code == 404


def test_renewal_old_and_new_channels_both_deliver(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    old, new = watch(service, receiver), watch(service, receiver)
    assert old["resourceId"] == new["resourceId"]
    receiver.wait_for(2)
    insert(service)
    notes = receiver.wait_for(4)
    assert {note["x-goog-channel-id"] for note in notes[2:]} == {old["id"], new["id"]}


@pytest.mark.parametrize(
    "body,reason",
    [
        ({"address": "http://example.com/hook"}, "push.webhookUrlNotHttps"),
        ({"type": "carrier_pigeon"}, "invalid"),
        ({"id": "x" * 65}, "invalid"),
        ({"token": "t" * 257}, "invalid"),
        ({"params": {"ttl": "soon"}}, "invalid"),
    ],
)
def test_watch_validation(
    service: Any, receiver: Receiver, body: dict[str, Any], reason: str
) -> None:
    request = {"id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url, **body}
    with pytest.raises(HttpError) as caught:
        service.events().watch(calendarId="primary", body=request).execute()
    assert caught.value.status_code == 400
    assert json.loads(caught.value.content)["error"]["errors"][0]["reason"] == reason


def test_reused_channel_id_is_rejected(service: Any, receiver: Receiver) -> None:
    channel = watch(service, receiver)
    with pytest.raises(HttpError) as caught:
        watch(service, receiver, id=channel["id"])
    assert json.loads(caught.value.content)["error"]["errors"][0]["reason"] == "channelIdNotUnique"


def test_https_and_localhost_addresses_are_accepted(service: Any, receiver: Receiver) -> None:
    watch(service, receiver, address="https://calsync.example.com/webhook")
    watch(service, receiver, address=receiver.url.replace("127.0.0.1", "localhost"))


def test_sync_can_arrive_before_the_watch_response(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    emu.control.set_sync_order("before")
    returned = threading.Event()
    seen_before_return: list[bool] = []
    receiver.on_request = lambda headers: seen_before_return.append(not returned.is_set())
    watch(service, receiver)
    returned.set()
    receiver.wait_for(1)
    assert seen_before_return == [True]


def test_sync_after_the_watch_response(emu: Any, service: Any, receiver: Receiver) -> None:
    emu.control.set_sync_order("after")
    watch(service, receiver)
    assert states(receiver) == [] or receiver.notifications[0]["x-goog-resource-state"] == "sync"
    assert receiver.wait_for(1)[0]["x-goog-resource-state"] == "sync"


def test_redelivery_with_backoff_on_5xx_and_no_retry_on_4xx(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    watch(service, receiver)
    receiver.wait_for(1)
    receiver.statuses = [503, 500, 200]
    insert(service)
    notes = receiver.wait_for(4)
    assert [note["_status"] for note in notes[1:]] == ["503", "500", "200"]
    assert len({note["x-goog-message-number"] for note in notes[1:]}) == 1
    receiver.statuses = [404]
    insert(service)
    assert emu.control.flush_notifications()
    counters = emu.control.counters()["notifications"]
    assert counters["retried"] == 2 and counters["failed"] == 1 and counters["delivered"] == 2


def test_redelivery_gives_up_after_a_handful_of_tries(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    emu.control.configure(retryInitialSeconds=0.01)
    watch(service, receiver)
    receiver.wait_for(1)
    receiver.statuses = [502] * 20
    insert(service)
    assert emu.control.flush_notifications()
    assert len(receiver.notifications) == 1 + 5
    assert emu.control.counters()["notifications"]["failed"] == 1


def test_drop_duplicate_delay_and_pause(emu: Any, service: Any, receiver: Receiver) -> None:
    channel = watch(service, receiver)
    receiver.wait_for(1)
    emu.control.drop_notifications(1, channel["id"])
    insert(service)
    assert emu.control.flush_notifications() and states(receiver) == ["sync"]
    emu.control.duplicate_notifications(1, channel["id"])
    insert(service)
    notes = receiver.wait_for(3)
    assert notes[1]["x-goog-message-number"] == notes[2]["x-goog-message-number"]
    emu.control.pause_notifications(True)
    insert(service)
    assert emu.control.flush_notifications() and len(receiver.notifications) == 3
    emu.control.pause_notifications(False)
    assert len(receiver.wait_for(4)) == 4
    emu.control.delay_notifications(0.5)
    insert(service)
    assert len(receiver.notifications) == 4
    assert len(receiver.wait_for(5)) == 5
    # Counted per channel too (a test injecting faults on one channel among many
    # shows they acted there): sync + 2 copies + released + delayed = 5 delivered.
    by_channel = emu.control.counters()["by_channel"]
    assert {k: v for k, v in by_channel.items() if k.endswith(channel["id"])} == {
        f"dropped:{channel['id']}": 1, f"duplicated:{channel['id']}": 1,
        f"delivered:{channel['id']}": 5}


def test_merge_coalesces_a_burst(emu: Any, service: Any, receiver: Receiver) -> None:
    watch(service, receiver)
    receiver.wait_for(1)
    emu.control.merge_notifications(0.3)
    for index in range(5):
        insert(service, str(index))
    assert emu.control.flush_notifications()
    assert states(receiver) == ["sync", "exists"]
    assert int(receiver.notifications[1]["x-goog-message-number"]) > 5
    assert emu.control.counters()["notifications"]["merged"] == 4


def test_unreachable_receiver_counts_as_failed(emu: Any, service: Any) -> None:
    emu.control.configure(retryInitialSeconds=0.01, maxAttempts=2)
    dead = Receiver()
    dead.close()
    service.events().watch(
        calendarId="primary", body={"id": "dead", "type": "web_hook", "address": dead.url}
    ).execute()
    assert emu.control.flush_notifications()
    assert emu.control.counters()["notifications"]["failed"] == 1


def test_other_collections_can_be_watched(emu: Any, service: Any, receiver: Receiver) -> None:
    body = {"type": "web_hook", "address": receiver.url}
    service.calendarList().watch(body={"id": "cl", **body}).execute()
    service.settings().watch(body={"id": "st", **body}).execute()
    service.acl().watch(calendarId="primary", body={"id": "acl", **body}).execute()
    receiver.wait_for(3)
    service.calendars().insert(body={"summary": "team"}).execute()
    notes = receiver.wait_for(4)
    assert notes[-1]["x-goog-channel-id"] == "cl" and notes[-1]["x-goog-resource-state"] == "exists"
    assert USER
