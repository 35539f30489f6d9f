"""calendarList.list / get: entries, paging, sync tokens, filters (calendar-api.md section 6)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from infra.calendar_emulator.testing import calendar_service

from .conftest import USER
from .test_auth_errors import raw
from .test_list import FULL_SYNC_BODY

BOB = "bob@example.com"


def list_entries(service: Any, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(all entries, all responses) of a paged calendarList listing."""
    items, pages = [], []
    token = None
    while True:
        response = service.calendarList().list(pageToken=token, **params).execute()
        pages.append(response)
        items.extend(response.get("items", []))
        token = response.get("nextPageToken")
        if not token:
            return items, pages


def sync_token(service: Any, **params: Any) -> str:
    return str(list_entries(service, **params)[1][-1]["nextSyncToken"])


def reason_of(err: HttpError) -> str:
    return str(json.loads(err.content)["error"]["errors"][0]["reason"])


def test_entries_in_googles_shape_owned_and_shared(emu: Any, service: Any) -> None:
    team = emu.control.create_calendar(USER, summary="Team", time_zone="Europe/Paris")
    bobs = emu.control.create_calendar(BOB, summary="Bob's")
    emu.control.share_calendar(bobs["id"], USER, "writer")
    emu.control.share_calendar(BOB, USER, "freeBusyReader")
    page = service.calendarList().list().execute()
    assert page["kind"] == "calendar#calendarList" and isinstance(page["etag"], str)
    assert "nextSyncToken" in page and "nextPageToken" not in page
    by_id = {entry["id"]: entry for entry in page["items"]}
    assert set(by_id) == {USER, team["id"], bobs["id"], BOB}
    assert page["items"][0]["id"] == USER
    for entry in by_id.values():
        assert entry["kind"] == "calendar#calendarListEntry"
        assert isinstance(entry["etag"], str) and entry["etag"].startswith('"')
        assert "deleted" not in entry
    assert by_id[USER]["primary"] is True and by_id[USER]["accessRole"] == "owner"
    assert by_id[team["id"]]["accessRole"] == "owner" and "primary" not in by_id[team["id"]]
    assert by_id[team["id"]]["summary"] == "Team"
    assert by_id[team["id"]]["timeZone"] == "Europe/Paris"
    assert by_id[bobs["id"]]["accessRole"] == "writer"
    assert by_id[bobs["id"]]["dataOwner"] == BOB
    assert by_id[BOB]["accessRole"] == "freeBusyReader" and "primary" not in by_id[BOB]
    got = service.calendarList().get(calendarId=bobs["id"]).execute()
    assert got == by_id[bobs["id"]]
    assert service.calendarList().get(calendarId="primary").execute() == by_id[USER]


def test_get_of_a_calendar_not_in_the_list_is_404(emu: Any, service: Any) -> None:
    hidden = emu.control.create_calendar(BOB, summary="private")
    for calendar_id in (hidden["id"], "nothing@group.calendar.google.com"):
        with pytest.raises(HttpError) as caught:
            service.calendarList().get(calendarId=calendar_id).execute()
        assert caught.value.status_code == 404 and reason_of(caught.value) == "notFound"


def test_paging_default_100_max_250_and_tokens_exclusive(emu: Any, service: Any) -> None:
    for index in range(259):
        emu.control.create_calendar(USER, summary=f"cal {index}")
    first = service.calendarList().list().execute()
    assert len(first["items"]) == 100 and "nextSyncToken" not in first
    clamped = service.calendarList().list(maxResults=1000).execute()
    assert len(clamped["items"]) == 250 and "nextPageToken" in clamped
    items, pages = list_entries(service, maxResults=7)
    assert len(items) == 260 and len({entry["id"] for entry in items}) == 260
    for page in pages[:-1]:
        assert "nextPageToken" in page and "nextSyncToken" not in page
    assert "nextSyncToken" in pages[-1] and "nextPageToken" not in pages[-1]
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(maxResults=0).execute()
    assert caught.value.status_code == 400


def test_incremental_reports_added_role_changed_and_removed(emu: Any, service: Any) -> None:
    shared = emu.control.create_calendar(BOB, summary="shared")
    later = emu.control.create_calendar(BOB, summary="later")
    emu.control.share_calendar(shared["id"], USER, "reader")
    token = sync_token(service)
    assert list_entries(service, syncToken=token)[0] == []
    own = emu.control.create_calendar(USER, summary="mine")
    emu.control.share_calendar(later["id"], USER, "reader")
    emu.control.share_calendar(shared["id"], USER, "writer")
    items, pages = list_entries(service, syncToken=token)
    by_id = {entry["id"]: entry for entry in items}
    assert set(by_id) == {own["id"], later["id"], shared["id"]}
    assert by_id[shared["id"]]["accessRole"] == "writer"
    token = pages[-1]["nextSyncToken"]
    emu.control.unshare_calendar(shared["id"], USER)
    emu.control.delete_calendar(own["id"])
    items, pages = list_entries(service, syncToken=token)
    assert {entry["id"]: entry.get("deleted") for entry in items} == {
        shared["id"]: True,
        own["id"]: True,
    }
    # A deleted entry carries its identity only; showDeleted/showHidden are implied.
    assert all(set(entry) <= {"kind", "etag", "id", "deleted"} for entry in items)
    assert list_entries(service, syncToken=pages[-1]["nextSyncToken"])[0] == []


def test_incremental_paging_and_a_share_again_after_unshare(emu: Any, service: Any) -> None:
    calendars = [emu.control.create_calendar(BOB, summary=str(n))["id"] for n in range(9)]
    token = sync_token(service)
    for calendar_id in calendars:
        emu.control.share_calendar(calendar_id, USER, "reader")
    emu.control.unshare_calendar(calendars[0], USER)
    emu.control.share_calendar(calendars[0], USER, "owner")
    items, pages = list_entries(service, syncToken=token, maxResults=4)
    assert len(pages) == 3 and sorted(entry["id"] for entry in items) == sorted(calendars)
    again = {entry["id"]: entry for entry in items}[calendars[0]]
    assert again["accessRole"] == "owner" and "deleted" not in again


def test_changes_while_paging_come_back_in_the_next_increment(emu: Any, service: Any) -> None:
    before = [emu.control.create_calendar(USER, summary=str(n))["id"] for n in range(4)]
    first = service.calendarList().list(maxResults=3).execute()
    added = emu.control.create_calendar(USER, summary="late")
    rest = service.calendarList().list(maxResults=3, pageToken=first["nextPageToken"]).execute()
    seen = {entry["id"] for entry in first["items"] + rest["items"]}
    assert {USER, *before} <= seen
    changes = list_entries(service, syncToken=rest["nextSyncToken"])[0]
    assert [entry["id"] for entry in changes] == [added["id"]]


def test_min_access_role_filters_and_is_refused_with_a_sync_token(emu: Any, service: Any) -> None:
    for role in ("freeBusyReader", "reader", "writer", "owner"):
        created = emu.control.create_calendar(BOB, summary=role)
        emu.control.share_calendar(created["id"], USER, role)

    def roles(**params: Any) -> list[str]:
        return sorted(entry["accessRole"] for entry in list_entries(service, **params)[0])

    assert roles(minAccessRole="writer") == ["owner", "owner", "writer"]
    assert roles(minAccessRole="reader") == ["owner", "owner", "reader", "writer"]
    assert len(roles(minAccessRole="freeBusyReader")) == 5
    assert roles(minAccessRole="writerWithoutPrivateAccess") == ["owner", "owner", "writer"]
    token = sync_token(service)
    for extra in ({"minAccessRole": "reader"}, {"showDeleted": False}, {"showHidden": False}):
        with pytest.raises(HttpError) as caught:
            service.calendarList().list(syncToken=token, **extra).execute()
        assert caught.value.status_code == 400 and reason_of(caught.value) == "invalid"
    # The client checks the enum itself; the emulator refuses it too.
    status, body = raw(emu, "GET", "/calendar/v3/users/me/calendarList?minAccessRole=superuser")
    assert (
        status == 400
        and body is not None
        and body["error"]["errors"][0]["location"] == "minAccessRole"
    )


def test_own_organization_only(emu: Any, service: Any) -> None:
    ours = emu.control.create_calendar("carol@example.com", summary="ours")["id"]
    theirs = emu.control.create_calendar("dan@other.org", summary="theirs")["id"]
    for calendar_id in (ours, theirs):
        emu.control.share_calendar(calendar_id, USER, "reader")
    shown = {entry["id"] for entry in list_entries(service, showOwnOrganizationOnly=True)[0]}
    assert shown == {USER, ours}
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(
            syncToken=sync_token(service), showOwnOrganizationOnly=True
        ).execute()
    assert caught.value.status_code == 400


def test_show_deleted_lists_removed_entries(emu: Any, service: Any) -> None:
    gone = emu.control.create_calendar(USER, summary="gone")
    emu.control.delete_calendar(gone["id"])
    assert gone["id"] not in {entry["id"] for entry in list_entries(service)[0]}
    shown = {entry["id"]: entry for entry in list_entries(service, showDeleted=True)[0]}
    assert shown[gone["id"]]["deleted"] is True


def test_invalidated_expired_and_malformed_list_tokens(emu: Any, service: Any) -> None:
    token = sync_token(service)
    emu.control.invalidate_calendar_list_tokens(USER)
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(syncToken=token).execute()
    assert caught.value.status_code == 410
    assert json.loads(caught.value.content) == FULL_SYNC_BODY
    fresh = sync_token(service)
    service.calendarList().list(syncToken=fresh).execute()
    # Another user's tokens are untouched by the invalidation; an events token is not a list one.
    bob = calendar_service(emu.base_url, BOB)
    bob_token = sync_token(bob)
    emu.control.invalidate_calendar_list_tokens(USER)
    bob.calendarList().list(syncToken=bob_token).execute()
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(syncToken=bob_token).execute()
    assert caught.value.status_code == 410
    events_token = service.events().list(calendarId="primary").execute()["nextSyncToken"]
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(syncToken=events_token).execute()
    assert caught.value.status_code == 410
    emu.control.configure(syncTokenTtlSeconds=3600)
    expiring = sync_token(service)
    emu.control.advance_clock(7200)
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(syncToken=expiring).execute()
    assert caught.value.status_code == 410
    with pytest.raises(HttpError) as caught:
        service.calendarList().list(syncToken="garbage!").execute()
    assert caught.value.status_code == 400 and reason_of(caught.value) == "invalid"


def test_role_changes_can_be_configured_silent(emu: Any, service: Any) -> None:
    shared = emu.control.create_calendar(BOB, summary="shared")
    emu.control.share_calendar(shared["id"], USER, "reader")
    emu.control.configure(calendarListRoleChanges="silent")
    token = sync_token(service)
    emu.control.share_calendar(shared["id"], USER, "writer")
    assert list_entries(service, syncToken=token)[0] == []
    assert service.calendarList().get(calendarId=shared["id"]).execute()["accessRole"] == "writer"
    with pytest.raises(Exception, match="calendarListRoleChanges"):
        emu.control.configure(calendarListRoleChanges="sometimes")


def test_calendar_property_changes_are_not_list_changes(emu: Any, service: Any) -> None:
    team = service.calendars().insert(body={"summary": "Team"}).execute()
    token = sync_token(service)
    service.calendars().patch(calendarId=team["id"], body={"summary": "Team 2"}).execute()
    assert list_entries(service, syncToken=token)[0] == []
    assert service.calendarList().get(calendarId=team["id"]).execute()["summary"] == "Team 2"
