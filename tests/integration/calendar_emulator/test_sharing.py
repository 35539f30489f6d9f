"""Sharing through the ACL: access to events and calendarList.watch pushes (calendar-api.md 6)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from infra.calendar_emulator.testing import calendar_service

from .conftest import USER, Receiver, timed

BOB = "bob@example.com"


def error_of(err: HttpError) -> dict[str, Any]:
    return dict(json.loads(err.content)["error"])


def watch_list(service: Any, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url, **extra}
    return dict(service.calendarList().watch(body=body).execute())


def watch_events(service: Any, calendar_id: str, receiver: Receiver) -> dict[str, Any]:
    body = {"id": str(uuid.uuid4()), "type": "web_hook", "address": receiver.url}
    return dict(service.events().watch(calendarId=calendar_id, body=body).execute())


def insert(service: Any, calendar_id: str) -> dict[str, Any]:
    body = timed("2025-01-01T10:00:00", "2025-01-01T11:00:00", summary="x")
    return dict(service.events().insert(calendarId=calendar_id, body=body).execute())


def exists_count(emu: Any, receiver: Receiver, channel_id: str) -> int:
    assert emu.control.flush_notifications()
    return sum(
        1
        for note in receiver.notifications
        if note["x-goog-channel-id"] == channel_id and note["x-goog-resource-state"] == "exists"
    )


def test_a_calendar_not_shared_is_404_for_every_call(emu: Any, service: Any) -> None:
    bobs = emu.control.create_calendar(BOB, summary="Bob's")["id"]
    calls = [
        service.events().list(calendarId=bobs),
        service.events().watch(
            calendarId=bobs, body={"id": "w", "type": "web_hook", "address": "https://x.test/"}
        ),
        service.events().insert(
            calendarId=bobs, body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00")
        ),
        service.calendars().get(calendarId=bobs),
        service.calendars().delete(calendarId=bobs),
        service.events().list(calendarId=BOB),
    ]
    for call in calls:
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert caught.value.status_code == 404
        assert error_of(caught.value)["errors"][0]["reason"] == "notFound"


def test_roles_decide_reads_and_writes(emu: Any, service: Any) -> None:
    bob = calendar_service(emu.base_url, BOB)
    bobs = emu.control.create_calendar(BOB, summary="Bob's")["id"]
    event = insert(bob, bobs)
    emu.control.share_calendar(bobs, USER, "reader")
    listed = service.events().list(calendarId=bobs).execute()
    assert listed["accessRole"] == "reader" and [e["id"] for e in listed["items"]] == [event["id"]]
    assert service.events().get(calendarId=bobs, eventId=event["id"]).execute()["id"]
    with pytest.raises(HttpError) as caught:
        insert(service, bobs)
    assert caught.value.status_code == 403
    error = error_of(caught.value)
    assert error["errors"][0] == {
        "domain": "calendar",
        "reason": "requiredAccessLevel",
        "message": "You need to have writer access to this calendar.",
    }
    emu.control.share_calendar(bobs, USER, "writer")
    insert(service, bobs)
    assert service.events().list(calendarId=bobs).execute()["accessRole"] == "writer"
    with pytest.raises(HttpError) as caught:
        service.calendars().delete(calendarId=bobs).execute()
    assert caught.value.status_code == 403
    assert emu.control.acl(bobs) == {BOB: "owner", USER: "writer"}


def test_free_busy_reader_gets_403_on_events_list_and_watch(emu: Any, service: Any) -> None:
    bobs = emu.control.create_calendar(BOB, summary="Bob's")["id"]
    emu.control.share_calendar(bobs, USER, "writer")
    service.events().list(calendarId=bobs).execute()
    emu.control.share_calendar(bobs, USER, "freeBusyReader")
    for call in (
        service.events().list(calendarId=bobs),
        service.events().watch(
            calendarId=bobs, body={"id": "fb", "type": "web_hook", "address": "https://x.test/"}
        ),
    ):
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert caught.value.status_code == 403
        assert error_of(caught.value) == {
            "errors": [
                {
                    "domain": "calendar",
                    "reason": "requiredAccessLevel",
                    "message": "You need to have reader access to this calendar.",
                }
            ],
            "code": 403,
            "message": "You need to have reader access to this calendar.",
        }
    # The calendar itself stays visible, as it does in the user's list.
    assert service.calendars().get(calendarId=bobs).execute()["id"] == bobs


def test_free_busy_reader_can_be_served_busy_times_only(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    emu.control.configure(freeBusyEvents="busyOnly")
    bob = calendar_service(emu.base_url, BOB)
    bobs = emu.control.create_calendar(BOB, summary="Bob's")["id"]
    event = insert(bob, bobs)
    emu.control.share_calendar(bobs, USER, "freeBusyReader")
    page = service.events().list(calendarId=bobs).execute()
    assert page["accessRole"] == "freeBusyReader" and "nextSyncToken" in page
    (item,) = page["items"]
    assert item["id"] == event["id"] and item["start"] == event["start"]
    assert "summary" not in item and "organizer" not in item and "creator" not in item
    channel = watch_events(service, bobs, receiver)
    receiver.wait_for(1)
    insert(bob, bobs)
    assert exists_count(emu, receiver, channel["id"]) == 1
    with pytest.raises(HttpError) as caught:
        service.events().get(calendarId=bobs, eventId=event["id"]).execute()
    assert caught.value.status_code == 403
    with pytest.raises(Exception, match="freeBusyEvents"):
        emu.control.configure(freeBusyEvents="everything")


def test_losing_access_is_404_on_events_and_ends_event_pushes(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    bob = calendar_service(emu.base_url, BOB)
    bobs = emu.control.create_calendar(BOB, summary="Bob's")["id"]
    emu.control.share_calendar(bobs, USER, "reader")
    token = service.events().list(calendarId=bobs).execute()["nextSyncToken"]
    channel = watch_events(service, bobs, receiver)
    receiver.wait_for(1)
    insert(bob, bobs)
    assert exists_count(emu, receiver, channel["id"]) == 1
    emu.control.unshare_calendar(bobs, USER)
    insert(bob, bobs)
    assert exists_count(emu, receiver, channel["id"]) == 1
    for call in (
        service.events().list(calendarId=bobs),
        service.events().list(calendarId=bobs, syncToken=token),
        service.events().watch(
            calendarId=bobs, body={"id": "again", "type": "web_hook", "address": receiver.url}
        ),
    ):
        with pytest.raises(HttpError) as caught:
            call.execute()
        assert caught.value.status_code == 404
    # Shared again, the same channel is told about changes again.
    emu.control.share_calendar(bobs, USER, "reader")
    insert(bob, bobs)
    assert exists_count(emu, receiver, channel["id"]) == 2


def test_list_pushes_on_create_delete_share_role_change_and_unshare(
    emu: Any, service: Any, receiver: Receiver
) -> None:
    channel = watch_list(service, receiver, token="t", params={"ttl": "3600"})
    assert set(channel) == {"kind", "id", "resourceId", "resourceUri", "token", "expiration"}
    assert channel["resourceUri"].endswith("/calendar/v3/users/me/calendarList?alt=json")
    (sync,) = receiver.wait_for(1)
    assert sync["x-goog-resource-state"] == "sync" and sync["x-goog-message-number"] == "1"
    assert sync["x-goog-resource-uri"] == channel["resourceUri"]
    assert sync["x-goog-resource-id"] == channel["resourceId"]
    assert sync["x-goog-channel-token"] == "t"
    bob_channel = watch_list(calendar_service(emu.base_url, BOB), receiver)
    receiver.wait_for(2)
    created = service.calendars().insert(body={"summary": "mine"}).execute()
    assert exists_count(emu, receiver, channel["id"]) == 1
    service.calendars().delete(calendarId=created["id"]).execute()
    assert exists_count(emu, receiver, channel["id"]) == 2
    bobs = emu.control.create_calendar(BOB, summary="Bob's")["id"]
    assert exists_count(emu, receiver, bob_channel["id"]) == 1
    assert exists_count(emu, receiver, channel["id"]) == 2
    emu.control.share_calendar(bobs, USER, "reader")
    assert exists_count(emu, receiver, channel["id"]) == 3
    emu.control.share_calendar(bobs, USER, "reader")  # no change: no push
    assert exists_count(emu, receiver, channel["id"]) == 3
    emu.control.share_calendar(bobs, USER, "writer")
    assert exists_count(emu, receiver, channel["id"]) == 4
    emu.control.unshare_calendar(bobs, USER)
    assert exists_count(emu, receiver, channel["id"]) == 5
    emu.control.share_calendar(bobs, USER, "reader")
    emu.control.delete_calendar(bobs)
    assert exists_count(emu, receiver, channel["id"]) == 7
    assert exists_count(emu, receiver, bob_channel["id"]) == 2
    notes = [n for n in receiver.notifications if n["x-goog-channel-id"] == channel["id"]]
    assert all(n["x-goog-resource-uri"] == channel["resourceUri"] for n in notes)
    numbers = [int(n["x-goog-message-number"]) for n in notes]
    assert sorted(numbers) == sorted(set(numbers))


def test_list_channel_stops(emu: Any, service: Any, receiver: Receiver) -> None:
    channel = watch_list(service, receiver)
    receiver.wait_for(1)
    emu.control.create_calendar(USER, summary="before stop")
    assert exists_count(emu, receiver, channel["id"]) == 1
    service.channels().stop(
        body={"id": channel["id"], "resourceId": channel["resourceId"]}
    ).execute()
    emu.control.create_calendar(USER, summary="after stop")
    assert exists_count(emu, receiver, channel["id"]) == 1


def test_acl_changes_push_to_acl_channels(emu: Any, service: Any, receiver: Receiver) -> None:
    team = service.calendars().insert(body={"summary": "team"}).execute()["id"]
    service.acl().watch(
        calendarId=team, body={"id": "acl", "type": "web_hook", "address": receiver.url}
    ).execute()
    receiver.wait_for(1)
    emu.control.share_calendar(team, BOB, "reader")
    emu.control.unshare_calendar(team, BOB)
    assert exists_count(emu, receiver, "acl") == 2


@pytest.mark.parametrize(
    "call,status",
    [
        (lambda c: c.share_calendar("nope@group.calendar.google.com", BOB, "reader"), 404),
        (lambda c: c.share_calendar(USER, BOB, "admin"), 400),
        (lambda c: c.share_calendar(USER, USER, "reader"), 400),
        (lambda c: c.unshare_calendar(USER, USER), 400),
        (lambda c: c.delete_calendar(USER), 400),
        (lambda c: c.delete_calendar("nope@group.calendar.google.com"), 404),
    ],
)
def test_control_refuses_bad_sharing(emu: Any, call: Any, status: int) -> None:
    emu.control.add_user(USER)
    with pytest.raises(Exception) as caught:
        call(emu.control)
    assert getattr(caught.value, "status", None) == status
