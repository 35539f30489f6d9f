"""events.list: paging, sync tokens, deletion visibility, filters (calendar-api.md section 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from .conftest import USER, timed

FULL_SYNC_BODY = {
    "error": {
        "errors": [
            {
                "domain": "calendar",
                "reason": "fullSyncRequired",
                "message": "Sync token is no longer valid, a full sync is required.",
                "locationType": "parameter",
                "location": "syncToken",
            }
        ],
        "code": 410,
        "message": "Sync token is no longer valid, a full sync is required.",
    }
}


def list_all(service: Any, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(all items, all responses) of a paged listing."""
    items, pages = [], []
    token = None
    while True:
        response = service.events().list(calendarId="primary", pageToken=token, **params).execute()
        pages.append(response)
        items.extend(response.get("items", []))
        token = response.get("nextPageToken")
        if not token:
            return items, pages


def seed(emu: Any, count: int) -> list[str]:
    return emu.control.bulk_insert_events(
        USER,
        [
            timed(
                f"2025-01-{index % 28 + 1:02d}T10:00:00",
                f"2025-01-{index % 28 + 1:02d}T11:00:00",
                summary=f"event {index}",
            )
            for index in range(count)
        ],
    )


def error_of(err: HttpError) -> dict[str, Any]:
    return json.loads(err.content)["error"]


def test_paging_returns_every_event_once_and_sync_token_only_on_last_page(
    emu: Any, service: Any
) -> None:
    ids = seed(emu, 23)
    items, pages = list_all(service, maxResults=5)
    assert sorted(item["id"] for item in items) == sorted(ids)
    assert len(pages) == 5
    for page in pages[:-1]:
        assert "nextPageToken" in page and "nextSyncToken" not in page
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]


def test_default_page_size_is_250_and_more_than_2500_is_clamped(emu: Any, service: Any) -> None:
    seed(emu, 2600)
    assert len(service.events().list(calendarId="primary").execute()["items"]) == 250
    page = service.events().list(calendarId="primary", maxResults=5000).execute()
    assert len(page["items"]) == 2500 and "nextPageToken" in page


def test_response_envelope(emu: Any, service: Any) -> None:
    seed(emu, 1)
    page = service.events().list(calendarId="primary").execute()
    for key in (
        "kind",
        "etag",
        "summary",
        "updated",
        "timeZone",
        "accessRole",
        "defaultReminders",
        "items",
    ):
        assert key in page
    assert page["kind"] == "calendar#events"


def test_pages_may_be_short_or_empty_and_still_continue(emu: Any, service: Any) -> None:
    ids = seed(emu, 4)
    emu.control.configure(maxPageItems=1)
    items, pages = list_all(service, maxResults=3)
    assert sorted(item["id"] for item in items) == sorted(ids)
    assert all(len(page["items"]) <= 1 for page in pages)


def test_incremental_returns_exactly_the_changes_with_deletions_minimal(
    emu: Any, service: Any
) -> None:
    ids = seed(emu, 10)
    _, pages = list_all(service)
    token = pages[-1]["nextSyncToken"]
    service.events().patch(
        calendarId="primary", eventId=ids[0], body={"summary": "changed"}
    ).execute()
    service.events().delete(calendarId="primary", eventId=ids[1]).execute()
    created = (
        service.events()
        .insert(calendarId="primary", body=timed("2025-02-01T10:00:00", "2025-02-01T11:00:00"))
        .execute()
    )
    items, pages = list_all(service, syncToken=token)
    by_id = {item["id"]: item for item in items}
    assert set(by_id) == {ids[0], ids[1], created["id"]}
    assert by_id[ids[0]]["summary"] == "changed"
    assert by_id[ids[1]]["status"] == "cancelled"
    assert set(by_id[ids[1]]) <= {"kind", "etag", "id", "status"}
    # Nothing changed since: an empty incremental page with a fresh token.
    again, pages = list_all(service, syncToken=pages[-1]["nextSyncToken"])
    assert again == [] and "nextSyncToken" in pages[-1]


def test_incremental_paging_with_sync_and_page_token(emu: Any, service: Any) -> None:
    ids = seed(emu, 12)
    token = list_all(service)[1][-1]["nextSyncToken"]
    for event_id in ids[:7]:
        service.events().patch(
            calendarId="primary", eventId=event_id, body={"summary": "x"}
        ).execute()
    items, pages = list_all(service, syncToken=token, maxResults=3)
    assert sorted(item["id"] for item in items) == sorted(ids[:7])
    assert "nextSyncToken" in pages[-1] and all("nextSyncToken" not in page for page in pages[:-1])


def test_changes_during_paging_are_not_lost(emu: Any, service: Any) -> None:
    ids = seed(emu, 6)
    first = service.events().list(calendarId="primary", maxResults=3).execute()
    late = [
        event_id for event_id in ids if event_id not in {item["id"] for item in first["items"]}
    ][0]
    service.events().patch(calendarId="primary", eventId=late, body={"summary": "late"}).execute()
    rest = (
        service.events()
        .list(calendarId="primary", maxResults=3, pageToken=first["nextPageToken"])
        .execute()
    )
    assert {item["id"] for item in first["items"] + rest["items"]} == set(ids)
    changes, _ = list_all(service, syncToken=rest["nextSyncToken"])
    assert [item["id"] for item in changes] == [late]


def test_sync_token_ignores_show_deleted(emu: Any, service: Any) -> None:
    ids = seed(emu, 2)
    token = list_all(service)[1][-1]["nextSyncToken"]
    service.events().delete(calendarId="primary", eventId=ids[0]).execute()
    items, _ = list_all(service, syncToken=token, showDeleted=False)
    assert [(item["id"], item["status"]) for item in items] == [(ids[0], "cancelled")]


@pytest.mark.parametrize(
    "param,value",
    [
        ("iCalUID", "x@google.com"),
        ("orderBy", "updated"),
        ("privateExtendedProperty", "a=b"),
        ("sharedExtendedProperty", "a=b"),
        ("q", "x"),
        ("timeMin", "2025-01-01T00:00:00Z"),
        ("timeMax", "2025-01-01T00:00:00Z"),
        ("updatedMin", "2025-01-01T00:00:00Z"),
    ],
)
def test_forbidden_parameters_with_sync_token(
    emu: Any, service: Any, param: str, value: str
) -> None:
    token = list_all(service)[1][-1]["nextSyncToken"]
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=token, **{param: value}).execute()
    assert caught.value.status_code == 400


def test_invalidated_sync_token_answers_exact_410(emu: Any, service: Any) -> None:
    token = list_all(service)[1][-1]["nextSyncToken"]
    emu.control.invalidate_sync_tokens(USER)
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=token).execute()
    assert caught.value.status_code == 410
    assert json.loads(caught.value.content) == FULL_SYNC_BODY
    assert caught.value.reason == "Sync token is no longer valid, a full sync is required."
    # A full sync afterwards yields a token that works.
    fresh = list_all(service)[1][-1]["nextSyncToken"]
    service.events().list(calendarId="primary", syncToken=fresh).execute()


def test_sync_token_expires_after_reset_and_after_ttl(emu: Any, service: Any) -> None:
    token = list_all(service)[1][-1]["nextSyncToken"]
    emu.control.configure(syncTokenTtlSeconds=3600)
    emu.control.advance_clock(7200)
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=token).execute()
    assert caught.value.status_code == 410
    emu.control.reset()
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken=token).execute()
    assert caught.value.status_code == 410


def test_malformed_sync_token_is_400_invalid(emu: Any, service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", syncToken="garbage!").execute()
    assert caught.value.status_code == 400
    assert error_of(caught.value)["errors"][0]["reason"] == "invalid"


def test_full_listing_omits_deleted_unless_show_deleted(emu: Any, service: Any) -> None:
    ids = seed(emu, 3)
    service.events().delete(calendarId="primary", eventId=ids[0]).execute()
    assert ids[0] not in {item["id"] for item in list_all(service)[0]}
    shown = {item["id"]: item for item in list_all(service, showDeleted=True)[0]}
    assert shown[ids[0]]["status"] == "cancelled"


def recurring_body(count: int = 5) -> dict[str, Any]:
    return {
        "summary": "standup",
        "start": {"dateTime": "2025-03-03T09:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2025-03-03T09:15:00", "timeZone": "Europe/Berlin"},
        "recurrence": [f"RRULE:FREQ=DAILY;COUNT={count}"],
    }


def test_cancelled_instances_show_without_show_deleted_when_not_single_events(
    emu: Any, service: Any
) -> None:
    series = service.events().insert(calendarId="primary", body=recurring_body()).execute()
    instance_id = f"{series['id']}_20250304T080000Z"
    service.events().delete(calendarId="primary", eventId=instance_id).execute()
    items = list_all(service)[0]
    by_id = {item["id"]: item for item in items}
    assert by_id[series["id"]]["recurrence"] == ["RRULE:FREQ=DAILY;COUNT=5"]
    cancelled = by_id[instance_id]
    assert cancelled["status"] == "cancelled"
    assert cancelled["recurringEventId"] == series["id"]
    assert cancelled["originalStartTime"]["dateTime"] == "2025-03-04T09:00:00+01:00"
    # singleEvents: the cancelled instance is gone unless showDeleted.
    single = [item["id"] for item in list_all(service, singleEvents=True)[0]]
    assert instance_id not in single and len(single) == 4
    single_deleted = {
        item["id"]: item for item in list_all(service, singleEvents=True, showDeleted=True)[0]
    }
    assert single_deleted[instance_id]["status"] == "cancelled"


def test_deleted_series_not_listed_with_single_events_and_show_deleted(
    emu: Any, service: Any
) -> None:
    series = service.events().insert(calendarId="primary", body=recurring_body()).execute()
    service.events().delete(
        calendarId="primary", eventId=f"{series['id']}_20250305T080000Z"
    ).execute()
    service.events().delete(calendarId="primary", eventId=series["id"]).execute()
    ids = {item["id"] for item in list_all(service, singleEvents=True, showDeleted=True)[0]}
    assert series["id"] not in ids
    assert f"{series['id']}_20250305T080000Z" in ids


def test_modified_instance_is_a_separate_exception_item(emu: Any, service: Any) -> None:
    series = service.events().insert(calendarId="primary", body=recurring_body()).execute()
    token = list_all(service)[1][-1]["nextSyncToken"]
    instance_id = f"{series['id']}_20250305T080000Z"
    service.events().patch(
        calendarId="primary", eventId=instance_id, body={"summary": "moved"}
    ).execute()
    changes = list_all(service, syncToken=token)[0]
    assert [item["id"] for item in changes] == [instance_id]
    assert changes[0]["recurringEventId"] == series["id"]
    assert changes[0]["originalStartTime"] == {
        "dateTime": "2025-03-05T09:00:00+01:00",
        "timeZone": "Europe/Berlin",
    }
    assert "recurrence" not in changes[0]
    summaries = {item["id"]: item["summary"] for item in list_all(service, singleEvents=True)[0]}
    assert summaries[instance_id] == "moved" and len(summaries) == 5


def test_time_window_and_order_by_start_time(emu: Any, service: Any) -> None:
    for day in (5, 1, 3):
        service.events().insert(
            calendarId="primary",
            body=timed(f"2025-06-0{day}T10:00:00", f"2025-06-0{day}T11:00:00", summary=str(day)),
        ).execute()
    items = list_all(
        service,
        timeMin="2025-06-02T00:00:00Z",
        timeMax="2025-06-10T00:00:00+02:00",
        singleEvents=True,
        orderBy="startTime",
    )[0]
    assert [item["summary"] for item in items] == ["3", "5"]
    # timeMin is exclusive on the end time, timeMax on the start.
    edge = list_all(service, timeMin="2025-06-01T11:00:00Z", timeMax="2025-06-05T10:00:00Z")[0]
    assert [item["summary"] for item in edge] == ["3"]


def test_recurring_series_filtered_by_window_and_expanded(emu: Any, service: Any) -> None:
    series = service.events().insert(calendarId="primary", body=recurring_body(10)).execute()
    window = {"timeMin": "2025-03-05T00:00:00Z", "timeMax": "2025-03-07T00:00:00Z"}
    assert [item["id"] for item in list_all(service, **window)[0]] == [series["id"]]
    instances = list_all(service, singleEvents=True, **window)[0]
    assert [item["id"] for item in instances] == [
        f"{series['id']}_20250305T080000Z",
        f"{series['id']}_20250306T080000Z",
    ]
    assert list_all(service, timeMin="2026-01-01T00:00:00Z")[0] == []


def test_time_range_empty_and_order_by_requires_single_events(emu: Any, service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().list(
            calendarId="primary", timeMin="2025-01-02T00:00:00Z", timeMax="2025-01-01T00:00:00Z"
        ).execute()
    assert caught.value.status_code == 400
    assert error_of(caught.value)["errors"][0]["reason"] == "timeRangeEmpty"
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", orderBy="startTime").execute()
    assert caught.value.status_code == 400


def test_time_bounds_need_an_offset(emu: Any, service: Any) -> None:
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", timeMin="2025-01-02T00:00:00").execute()
    assert caught.value.status_code == 400


def test_updated_min_filters_includes_deleted_and_rejects_too_long_ago(
    emu: Any, service: Any
) -> None:
    ids = seed(emu, 3)
    emu.control.advance_clock(60)
    mark = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    service.events().patch(calendarId="primary", eventId=ids[0], body={"summary": "new"}).execute()
    service.events().delete(calendarId="primary", eventId=ids[1]).execute()
    items = {item["id"]: item["status"] for item in list_all(service, updatedMin=mark)[0]}
    assert items == {ids[0]: "confirmed", ids[1]: "cancelled"}
    with pytest.raises(HttpError) as caught:
        service.events().list(calendarId="primary", updatedMin="2000-01-01T00:00:00Z").execute()
    assert caught.value.status_code == 410
    assert error_of(caught.value)["errors"][0]["reason"] == "updatedMinTooLongAgo"


def test_q_ical_uid_and_extended_properties(emu: Any, service: Any) -> None:
    first = (
        service.events()
        .insert(
            calendarId="primary",
            body=timed(
                "2025-01-01T10:00:00",
                "2025-01-01T11:00:00",
                summary="Budget review",
                location="Room 7",
                extendedProperties={"private": {"sub": "a"}, "shared": {"team": "x"}},
            ),
        )
        .execute()
    )
    second = (
        service.events()
        .insert(
            calendarId="primary",
            body=timed(
                "2025-01-02T10:00:00",
                "2025-01-02T11:00:00",
                summary="Lunch",
                extendedProperties={"private": {"sub": "b"}},
            ),
        )
        .execute()
    )
    assert [item["id"] for item in list_all(service, q="budget room")[0]] == [first["id"]]
    assert [item["id"] for item in list_all(service, iCalUID=second["iCalUID"])[0]] == [
        second["id"]
    ]
    assert [item["id"] for item in list_all(service, privateExtendedProperty="sub=b")[0]] == [
        second["id"]
    ]
    assert [item["id"] for item in list_all(service, sharedExtendedProperty="team=x")[0]] == [
        first["id"]
    ]
    assert list_all(service, privateExtendedProperty=["sub=a", "sub=b"])[0] == []


def test_order_by_updated(emu: Any, service: Any) -> None:
    ids = seed(emu, 3)
    service.events().patch(calendarId="primary", eventId=ids[0], body={"summary": "last"}).execute()
    items = list_all(service, orderBy="updated")[0]
    assert items[-1]["id"] == ids[0]


def test_page_token_bound_to_its_parameters(emu: Any, service: Any) -> None:
    seed(emu, 4)
    page = service.events().list(calendarId="primary", maxResults=2).execute()
    with pytest.raises(HttpError) as caught:
        service.events().list(
            calendarId="primary", maxResults=2, showDeleted=True, pageToken=page["nextPageToken"]
        ).execute()
    assert caught.value.status_code == 400
