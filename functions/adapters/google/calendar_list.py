"""An account's calendar list on Google's side: `calendarList.list` with sync tokens,
`calendarList.watch` and `channels.stop` (calendar-api.md, section 6).

The same client and credentials as the Calendar adapter (one per owner and
credential), the same classification of failures: a 410 (or a sync token
refused as invalid) is `SyncTokenInvalid`, and the account sync lists in full.
Deleted and hidden entries are asked for on every call (with a token they are
implied and may not be refused), so a full and an incremental listing describe
the same list; `minAccessRole` is never sent (it cannot be combined with a
token): the account's policy is applied by calsync itself.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.google.calendar import GoogleCalendar, _translated
from functions.adapters.google.channels import MAX_TTL_SECONDS
from functions.errors import CalendarGone
from functions.model import Account, CalendarListPage
from functions.ports import CalendarListPort, OpenedChannel

MAX_LIST_PAGE = 250  # calendarList.list never answers more per page


class GoogleCalendarList(CalendarListPort):
    def __init__(self, calendar: GoogleCalendar, num_retries: int = 1) -> None:
        self._calendar = calendar
        self._num_retries = num_retries

    def list_page(self, account: Account, *, sync_token: str | None,
                  page_token: str | None) -> CalendarListPage:
        params: dict[str, Any] = {"maxResults": MAX_LIST_PAGE, "showDeleted": True,
                                  "showHidden": True}
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        with _translated(sync_token):
            service: Any = self._calendar._service(account.identity())
            response = service.calendarList().list(**params).execute(
                num_retries=self._num_retries)
        return CalendarListPage(items=tuple(response.get("items") or ()),
                                next_page_token=response.get("nextPageToken"),
                                next_sync_token=response.get("nextSyncToken"))

    def watch(self, account: Account, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                "params": {"ttl": str(min(ttl_seconds, MAX_TTL_SECONDS))}}
        with _translated(None):
            service: Any = self._calendar._service(account.identity())
            response = service.calendarList().watch(body=body).execute()
        expiration_ms = int(response.get("expiration") or 0)
        expiration = (datetime.fromtimestamp(expiration_ms / 1000, UTC) if expiration_ms
                      else datetime.now(UTC) + timedelta(seconds=ttl_seconds))
        return OpenedChannel(channel_id, str(response["resourceId"]), expiration)

    def stop(self, account: Account, channel_id: str, resource_id: str) -> None:
        try:
            with _translated(None):
                service: Any = self._calendar._service(account.identity())
                service.channels().stop(body={"id": channel_id,
                                              "resourceId": resource_id}).execute()
        except CalendarGone:
            return  # 404: unknown or already expired channel
