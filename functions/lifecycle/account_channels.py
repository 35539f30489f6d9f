"""Keeping an account's calendar list watched (DESIGN.md, "Channels"): the same rules
as a subscription's channel, for `calendarList.watch`.

A record of kind `calendar_list` (naming `account_id`, no `sub_id`) is saved
`pending` before the watch, with a short expiry so the renewer retries a watch
that never completed; the response is recorded only on a record still
`pending`; states only move forward; an account in `error` leaves its channels
to expire (`abandoned`: stopping them needs the credentials just refused).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from functions import logs
from functions.config import Settings
from functions.errors import CalendarError, CredentialsRejected, InvalidTransition
from functions.intake import channel_tokens
from functions.lifecycle.subscriptions import FORWARD, backoff
from functions.model import (
    ABANDONED,
    ACCEPTING_STATES,
    ACTIVE,
    CALENDAR_LIST_KIND,
    ERROR,
    PENDING,
    STOPPED,
    Account,
    Channel,
)
from functions.ports import AccountStore, CalendarListPort, LifecycleStore, OpenedChannel


class AccountChannels:
    def __init__(self, settings: Settings, accounts: AccountStore, channels: LifecycleStore,
                 calendar_list: CalendarListPort | None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._settings = settings
        self._accounts = accounts
        self._channels = channels  # the channel records' own operations (any kind)
        self._list = calendar_list
        self._clock = clock

    def open_channel(self, account: Account, attempts: int = 0) -> OpenedChannel | None:
        """Save pending, watch the list, record the response; None when the record left
        `pending` meanwhile (the channel just opened is closed again). A failed watch
        leaves its record due at its next attempt (doubling backoff from `attempts`)
        and raises."""
        if self._list is None:
            raise CalendarError("this service cannot open channels (no Calendar access)")
        now = self._clock()
        channel_id = channel_tokens.new_channel_id()
        keys = self._settings.channel_token_keys
        grace = timedelta(seconds=self._settings.pending_channel_grace)
        self._channels.save_channel(
            Channel(channel_id, "", PENDING, expiration=now + grace, kind=CALENDAR_LIST_KIND,
                    account_id=account.id), now, token_key_id=next(iter(keys)))
        token = channel_tokens.sign(channel_id, keys)
        try:
            opened = self._list.watch(account, channel_id, token, self._settings.webhook_url,
                                      self._settings.channel_ttl)
        except CalendarError as err:
            tries = attempts + 1
            retry_at = now + backoff(tries, timedelta(seconds=self._settings.renewal_backoff))
            self._channels.set_channel(channel_id, {
                "renewal_attempts": tries, "expiration": retry_at, "next_attempt_at": retry_at,
                "last_error": f"watch failed: {type(err).__name__}: {err}"[:500]})
            raise
        if not self._accounts.activate_channel(channel_id, account.id, opened.resource_id,
                                               opened.expiration):
            with contextlib.suppress(CalendarError):
                self._list.stop(account, channel_id, opened.resource_id)
            logs.log("INFO", "channel closed", account=account.id, channel_id=channel_id,
                     outcome="not_pending_any_more")
            return None
        return opened

    def ensure_channel(self, account: Account) -> bool:
        """Open a channel unless one is delivering (a list run calls it before listing:
        watch first, then list); a failed watch is left to the renewer. True if opened."""
        if self._accounts.delivering_channels(account.id):
            return False
        try:
            return self.open_channel(account) is not None
        except CalendarError as err:
            logs.log("WARNING", "watch failed", account=account.id, outcome="watch_failed",
                     error=f"{type(err).__name__}: {err}"[:300])
            return False

    def move_channel(self, channel_id: str, to: str, **fields: Any) -> bool:
        return self._channels.move_channel(channel_id, FORWARD[to], {"state": to, **fields})

    def stop_channel(self, account: Account, channel: Channel) -> None:
        """Stop on Google's side, then `stopped`; rejected credentials → `abandoned`."""
        if channel.resource_id and self._list is not None:
            try:
                self._list.stop(account, channel.id, channel.resource_id)
            except CredentialsRejected:
                self.move_channel(channel.id, ABANDONED)
                return
        self.move_channel(channel.id, STOPPED)

    def stop_all(self, account: Account) -> None:
        """Stop every channel still accepting (disconnecting); failures expire on their own."""
        for channel in self._accounts.channels_of(account.id):
            if channel.state in ACCEPTING_STATES:
                with contextlib.suppress(CalendarError):
                    self.stop_channel(account, channel)

    def mark_error(self, account: Account, message: str, reason: str | None) -> bool:
        """Permanent failure of an active account (its grant refused): `error` with the
        reason; its channels left to expire. True if it moved."""
        now = self._clock()
        try:
            moved = self._accounts.transition(
                account.id, (ACTIVE,), ERROR, now,
                fields={"last_error": message[:500], "last_error_reason": reason,
                        "last_error_at": now, "sweep_at": None, "safety_net_at": None})
        except (InvalidTransition, LookupError):
            return False
        if moved.changed:
            for channel in self._accounts.delivering_channels(account.id):
                self.move_channel(channel.id, ABANDONED)
        return moved.changed
