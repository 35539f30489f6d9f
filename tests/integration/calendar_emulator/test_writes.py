"""Event writes and versions (calendar-api.md section 4) through the real client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from .conftest import timed


def reason_of(err: HttpError) -> str:
    return str(json.loads(err.content)["error"]["errors"][0]["reason"])


def with_if_match(request: Any, etag: str) -> Any:
    request.headers["If-Match"] = etag
    return request


def test_insert_get_update_patch_delete_roundtrip(service: Any) -> None:
    created = (
        service.events()
        .insert(
            calendarId="primary",
            body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00", summary="a"),
        )
        .execute()
    )
    assert created["kind"] == "calendar#event" and created["status"] == "confirmed"
    assert created["iCalUID"] and created["sequence"] == 0 and created["etag"].startswith('"')
    fetched = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert fetched == created
    updated = (
        service.events()
        .update(
            calendarId="primary",
            eventId=created["id"],
            body=timed("2025-01-01T12:00:00", "2025-01-01T13:00:00", summary="b"),
        )
        .execute()
    )
    assert updated["summary"] == "b" and updated["sequence"] == 1
    patched = (
        service.events()
        .patch(calendarId="primary", eventId=created["id"], body={"description": "d"})
        .execute()
    )
    assert patched["summary"] == "b" and patched["description"] == "d"
    assert len({created["etag"], updated["etag"], patched["etag"]}) == 3
    assert created["updated"] < updated["updated"] < patched["updated"]
    result = service.events().delete(calendarId="primary", eventId=created["id"]).execute()
    assert result == ""
    gone = service.events().get(calendarId="primary", eventId=created["id"]).execute()
    assert gone["status"] == "cancelled"


def test_update_requires_start_and_end(service: Any) -> None:
    created = (
        service.events()
        .insert(calendarId="primary", body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00"))
        .execute()
    )
    with pytest.raises(HttpError) as caught:
        service.events().update(
            calendarId="primary", eventId=created["id"], body={"summary": "x"}
        ).execute()
    assert caught.value.status_code == 400


def test_client_chosen_id_rules(service: Any) -> None:
    body = timed("2025-01-01T10:00:00", "2025-01-01T11:00:00", id="abcdev0123")
    assert service.events().insert(calendarId="primary", body=body).execute()["id"] == "abcdev0123"
    with pytest.raises(HttpError) as caught:
        service.events().insert(calendarId="primary", body=body).execute()
    assert caught.value.status_code == 409 and reason_of(caught.value) == "duplicate"
    for bad in ("abc", "UPPERCASE1", "xyzwxyzw"):  # too short, not lower base32hex, w-z not allowed
        with pytest.raises(HttpError) as caught:
            service.events().insert(calendarId="primary", body={**body, "id": bad}).execute()
        assert caught.value.status_code == 400


def test_deleting_a_deleted_event_is_410(service: Any) -> None:
    created = (
        service.events()
        .insert(calendarId="primary", body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00"))
        .execute()
    )
    service.events().delete(calendarId="primary", eventId=created["id"]).execute()
    with pytest.raises(HttpError) as caught:
        service.events().delete(calendarId="primary", eventId=created["id"]).execute()
    assert caught.value.status_code == 410 and reason_of(caught.value) == "deleted"


def test_if_match_with_stale_etag_is_412(service: Any) -> None:
    created = (
        service.events()
        .insert(calendarId="primary", body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00"))
        .execute()
    )
    current = with_if_match(
        service.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "1"}),
        created["etag"],
    ).execute()
    for request in (
        service.events().patch(calendarId="primary", eventId=created["id"], body={"summary": "2"}),
        service.events().update(
            calendarId="primary",
            eventId=created["id"],
            body=timed("2025-01-01T10:00:00", "2025-01-01T11:00:00"),
        ),
        service.events().delete(calendarId="primary", eventId=created["id"]),
    ):
        with pytest.raises(HttpError) as caught:
            with_if_match(request, created["etag"]).execute()
        assert caught.value.status_code == 412 and reason_of(caught.value) == "conditionNotMet"
    with_if_match(
        service.events().delete(calendarId="primary", eventId=created["id"]), current["etag"]
    ).execute()


def test_time_range_and_field_validation(service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().insert(
            calendarId="primary", body=timed("2025-01-01T11:00:00", "2025-01-01T10:00:00")
        ).execute()
    assert reason_of(caught.value) == "timeRangeEmpty"
    with pytest.raises(HttpError) as caught:
        service.events().insert(calendarId="primary", body={"summary": "no times"}).execute()
    assert caught.value.status_code == 400
    with pytest.raises(HttpError) as caught:
        service.events().insert(
            calendarId="primary",
            body=timed(
                "2025-01-01T10:00:00", "2025-01-01T11:00:00", recurrence=["RRULE:FREQ=SOMETIMES"]
            ),
        ).execute()
    assert caught.value.status_code == 400


def test_all_day_series_with_rdate_exdate_and_instance_ids(service: Any) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "summary": "holiday",
                "start": {"date": "2025-07-01"},
                "end": {"date": "2025-07-02"},
                "recurrence": [
                    "RRULE:FREQ=WEEKLY;UNTIL=20250722",
                    "EXDATE;VALUE=DATE:20250708",
                    "RDATE;VALUE=DATE:20250725",
                ],
            },
        )
        .execute()
    )
    instances = (
        service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    )
    assert [item["id"] for item in instances] == [
        f"{series['id']}_{day}" for day in ("20250701", "20250715", "20250722", "20250725")
    ]
    assert all(
        item["recurringEventId"] == series["id"] and item["iCalUID"] == series["iCalUID"]
        for item in instances
    )
    assert instances[1]["originalStartTime"] == {"date": "2025-07-15"}
    assert instances[1]["end"] == {"date": "2025-07-16"}


def test_series_expansion_follows_dst_and_exrule(service: Any) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "start": {"dateTime": "2025-03-28T09:00:00+01:00", "timeZone": "Europe/Berlin"},
                "end": {"dateTime": "2025-03-28T10:00:00+01:00", "timeZone": "Europe/Berlin"},
                "recurrence": ["RRULE:FREQ=DAILY;COUNT=4", "EXRULE:FREQ=DAILY;COUNT=1;BYDAY=SA"],
            },
        )
        .execute()
    )
    instances = (
        service.events().instances(calendarId="primary", eventId=series["id"]).execute()["items"]
    )
    assert [item["start"]["dateTime"] for item in instances] == [
        "2025-03-28T09:00:00+01:00",
        "2025-03-30T09:00:00+02:00",
        "2025-03-31T09:00:00+02:00",
    ]
    assert instances[1]["id"] == f"{series['id']}_20250330T070000Z"


def test_infinite_series_expansion_is_bounded_and_pages(service: Any) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "start": {"dateTime": "2025-01-01T09:00:00Z", "timeZone": "UTC"},
                "end": {"dateTime": "2025-01-01T10:00:00Z", "timeZone": "UTC"},
                "recurrence": ["RRULE:FREQ=DAILY"],
            },
        )
        .execute()
    )
    first = (
        service.events()
        .instances(calendarId="primary", eventId=series["id"], maxResults=100)
        .execute()
    )
    assert len(first["items"]) == 100 and "nextPageToken" in first
    window = (
        service.events()
        .instances(
            calendarId="primary",
            eventId=series["id"],
            timeMin="2026-01-01T00:00:00Z",
            timeMax="2026-01-03T00:00:00Z",
        )
        .execute()
    )
    assert [item["id"][-16:] for item in window["items"]] == [
        "20260101T090000Z",
        "20260102T090000Z",
    ]


def test_instance_get_patch_delete_and_immutable_identity(service: Any) -> None:
    series = (
        service.events()
        .insert(
            calendarId="primary",
            body={
                "summary": "s",
                "start": {"dateTime": "2025-01-06T09:00:00-05:00", "timeZone": "America/New_York"},
                "end": {"dateTime": "2025-01-06T10:00:00-05:00", "timeZone": "America/New_York"},
                "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"],
            },
        )
        .execute()
    )
    instance_id = f"{series['id']}_20250113T140000Z"
    instance = service.events().get(calendarId="primary", eventId=instance_id).execute()
    assert instance["recurringEventId"] == series["id"]
    moved = (
        service.events()
        .patch(
            calendarId="primary",
            eventId=instance_id,
            body={
                "start": {"dateTime": "2025-01-13T11:00:00-05:00"},
                "end": {"dateTime": "2025-01-13T12:00:00-05:00"},
                "recurringEventId": "hijack",
                "originalStartTime": {"dateTime": "2030-01-01T00:00:00Z"},
            },
        )
        .execute()
    )
    assert moved["recurringEventId"] == series["id"]
    assert moved["originalStartTime"] == instance["originalStartTime"]
    assert moved["start"]["dateTime"] == "2025-01-13T11:00:00-05:00"
    with pytest.raises(HttpError) as caught:
        service.events().get(
            calendarId="primary", eventId=f"{series['id']}_20250114T140000Z"
        ).execute()
    assert caught.value.status_code == 404
    service.events().delete(calendarId="primary", eventId=series["id"]).execute()
    assert (
        service.events().get(calendarId="primary", eventId=instance_id).execute()["status"]
        == "cancelled"
    )


def test_recurring_timed_event_needs_a_time_zone(service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().insert(
            calendarId="primary",
            body=timed(
                "2025-01-01T10:00:00", "2025-01-01T11:00:00", recurrence=["RRULE:FREQ=DAILY"]
            ),
        ).execute()
    assert caught.value.status_code == 400


def test_unknown_calendar_and_event_are_404(service: Any) -> None:
    for request in (
        service.events().list(calendarId="nobody@example.com"),
        service.events().get(calendarId="primary", eventId="doesnotexist1"),
    ):
        with pytest.raises(HttpError) as caught:
            request.execute()
        assert caught.value.status_code == 404 and reason_of(caught.value) == "notFound"
