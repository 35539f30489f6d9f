"""Watch channels on Google's side: open (`events.watch`) and stop (`channels.stop`).

The channel record is saved `pending` before `events.watch` is called (the
`sync` message can arrive first); the watch response's resource id must then
match whatever the webhook learnt meanwhile.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.google.calendar import GoogleCalendar, _translated
from functions.errors import CalendarGone
from functions.model import Subscription
from functions.ports import ChannelPort, OpenedChannel

MAX_TTL_SECONDS = 604800  # Google's maximum for calendar channels: 7 days


class GoogleChannels(ChannelPort):
    """`ChannelPort` over the same client (and credentials) as the sync adapter."""

    def __init__(self, calendar: GoogleCalendar) -> None:
        self._calendar = calendar

    def watch(self, subscription: Subscription, channel_id: str, token: str, address: str,
              ttl_seconds: int) -> OpenedChannel:
        body = {"id": channel_id, "type": "web_hook", "address": address, "token": token,
                "params": {"ttl": str(min(ttl_seconds, MAX_TTL_SECONDS))}}
        with _translated(None):
            events: Any = self._calendar._events(subscription)
            response = events.watch(
                calendarId=subscription.calendar_id, body=body).execute()
        expiration_ms = int(response.get("expiration") or 0)
        expiration = (datetime.fromtimestamp(expiration_ms / 1000, UTC) if expiration_ms
                      else datetime.now(UTC) + timedelta(seconds=ttl_seconds))
        return OpenedChannel(channel_id, str(response["resourceId"]), expiration)

    def stop(self, subscription: Subscription, channel_id: str, resource_id: str) -> None:
        try:
            with _translated(None):
                service: Any = self._calendar._service(subscription)
                service.channels().stop(body={"id": channel_id,
                                              "resourceId": resource_id}).execute()
        except CalendarGone:
            return  # 404: unknown or already expired channel
