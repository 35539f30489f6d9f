"""The Calendar ports over the fake Calendar, failing exactly as the real adapters fail.

A refusal of the fake Calendar is Google's status and body (`ApiError`); it is
turned into an `HttpError` like the one google-api-python-client raises and
classified by the Calendar adapter's own `classify`, so the services see the
very exceptions (`RateLimited`, `QuotaExhausted`, `SyncTokenInvalid`, ...) they
see in production. `list_page` retries as `app.calendar()` configures the
client (`execute(num_retries=1)`: one retry of 5xx, 429 and 403 rate limits,
decided by the client library's own `_should_retry_response`); the retry is
made at the same virtual instant (the client would sleep up to 2 s first).
`watch` and `stop` are not retried, as in `GoogleChannels`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import httplib2
from googleapiclient.errors import HttpError
from googleapiclient.http import _should_retry_response

from functions.adapters.google.calendar import classify
from functions.adapters.google.channels import MAX_TTL_SECONDS
from functions.errors import CalendarGone
from functions.model import EventPage, Subscription
from functions.ports import CalendarPort, ChannelPort, OpenedChannel
from infra.calendar_emulator.errors import ApiError
from infra.sim.calendar import FakeCalendar


def http_error(err: ApiError) -> HttpError:
    """The `HttpError` the client library raises for this answer."""
    return HttpError(httplib2.Response({"status": err.code}), err.to_bytes(),
                     uri="https://www.googleapis.com/calendar/v3/")


class SimCalendarPort(CalendarPort):
    def __init__(self, calendar: FakeCalendar, num_retries: int = 1) -> None:
        self._calendar = calendar
        self._num_retries = num_retries

    def list_page(self, subscription: Subscription, *, sync_token: str | None,
                  page_token: str | None, page_size: int) -> EventPage:
        for attempt in range(self._num_retries + 1):
            try:
                body = self._calendar.list_events(
                    subscription.owner, subscription.calendar_id, sync_token=sync_token,
                    page_token=page_token, max_results=page_size)
            except ApiError as err:
                if attempt < self._num_retries and _should_retry_response(
                        err.code, err.to_bytes()):
                    continue
                raise classify(http_error(err), sync_token) from err
            return EventPage(items=tuple(body.get("items") or ()),
                             next_page_token=body.get("nextPageToken"),
                             next_sync_token=body.get("nextSyncToken"))
        raise AssertionError("unreachable")  # pragma: no cover


class SimChannelPort(ChannelPort):
    def __init__(self, calendar: FakeCalendar) -> None:
        self._calendar = calendar

    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        try:
            response = self._calendar.watch(subscription.owner, subscription.calendar_id,
                                            channel_id, token, address,
                                            min(ttl_seconds, MAX_TTL_SECONDS))
        except ApiError as err:
            raise classify(http_error(err)) from err
        expiration = datetime.fromtimestamp(int(response["expiration"]) / 1000, UTC)
        return OpenedChannel(channel_id, str(response["resourceId"]), expiration)

    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        try:
            self._calendar.stop(subscription.owner, channel_id, resource_id)
        except ApiError as err:
            failure = classify(http_error(err))
            if isinstance(failure, CalendarGone):
                return  # 404: unknown or already expired channel
            raise failure from err
