"""Client for the emulator's control API. Standard library only, so any virtualenv can import it."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

# Control calls go to a loopback emulator: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ControlError(RuntimeError):
    """The control API answered with an error status."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"control API answered {status}: {body}")
        self.status = status
        self.body = body


class EmulatorControl:
    """Drives one emulator at ``base_url`` (``http://HOST:PORT``)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
    ) -> Any:
        url = f"{self.base_url}/control/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            raise ControlError(err.code, err.read().decode("utf-8", "replace")) from None

    # -- lifecycle and data ------------------------------------------------------------------

    def health(self) -> bool:
        """True when the emulator answers its health check."""
        return bool(self._call("GET", "health").get("ok"))

    def reset(self) -> None:
        """Forget calendars, events, channels, tokens, faults, counters; clock back to wall time."""
        self._call("POST", "reset")

    def add_user(self, user: str, refresh_token: str | None = None) -> str:
        """Register a user (valid token even with auth enforced); returns its calendar id."""
        body: dict[str, Any] = {"user": user}
        if refresh_token:
            body["refreshToken"] = refresh_token
        return str(self._call("POST", "users", body)["calendarId"])

    def create_calendar(
        self,
        user: str,
        summary: str = "Calendar",
        time_zone: str = "UTC",
        calendar_id: str | None = None,
    ) -> dict[str, Any]:
        """Create a secondary calendar owned by ``user``; returns its resource."""
        body: dict[str, Any] = {"user": user, "summary": summary, "timeZone": time_zone}
        if calendar_id:
            body["id"] = calendar_id
        return dict(self._call("POST", "calendars", body))

    def delete_calendar(self, calendar_id: str) -> None:
        """Delete a secondary calendar: it leaves every list holding it (each list pushes)."""
        self._call("POST", "calendars/delete", {"calendarId": calendar_id})

    # -- sharing and calendar lists ----------------------------------------------------------

    def share_calendar(self, calendar_id: str, user: str, role: str = "reader") -> dict[str, str]:
        """Grant ``user`` a role (or change it): the calendar enters or changes on their list.

        Roles: ``freeBusyReader``, ``reader``, ``writerWithoutPrivateAccess``, ``writer``,
        ``owner`` (``none`` unshares). Returns the calendar's ACL, user -> role.
        """
        body = {"calendarId": calendar_id, "user": user, "role": role}
        return dict(self._call("POST", "acl", body)["acl"])

    def unshare_calendar(self, calendar_id: str, user: str) -> dict[str, str]:
        """Take ``user``'s access away: the calendar leaves their list; returns the ACL."""
        body = {"calendarId": calendar_id, "user": user}
        return dict(self._call("DELETE", "acl", body)["acl"])

    def acl(self, calendar_id: str) -> dict[str, str]:
        """The calendar's ACL: user -> role, the data owner included."""
        return dict(self._call("GET", "acl", query={"calendarId": calendar_id})["acl"])

    def invalidate_calendar_list_tokens(self, user: str) -> None:
        """Every calendarList sync token issued to ``user`` so far answers 410."""
        self._call("POST", "calendar-list/invalidate", {"user": user})

    def bulk_insert_events(
        self, calendar_id: str, events: Iterable[Mapping[str, Any]], user: str | None = None
    ) -> list[str]:
        """Insert many events (one push notification); a user id names its primary calendar."""
        body: dict[str, Any] = {"calendarId": calendar_id, "events": list(events)}
        if user:
            body["user"] = user
        return list(self._call("POST", "events/bulk", body)["ids"])

    def dump_events(self, calendar_id: str) -> list[dict[str, Any]]:
        """Every stored event version of a calendar, deleted ones included, oldest change first."""
        return list(self._call("GET", "events", query={"calendarId": calendar_id})["events"])

    # -- failures, limits, tokens ------------------------------------------------------------

    def inject_failure(
        self, method: str, status: int, reason: str, count: int = 1, message: str | None = None
    ) -> None:
        """The next ``count`` calls of ``method`` (``events.list``, ``token``, ``*``) fail so."""
        body: dict[str, Any] = {
            "method": method,
            "status": status,
            "reason": reason,
            "count": count,
        }
        if message:
            body["message"] = message
        self._call("POST", "failures", body)

    def clear_failures(self) -> None:
        """Drop every pending injected failure."""
        self._call("DELETE", "failures")

    def set_rate_limit(
        self,
        limit: int | None,
        window_seconds: float = 60.0,
        status: int = 403,
        user: str | None = None,
    ) -> None:
        """Per-user limit: ``limit`` calls per window, then 403 or 429; None switches it off."""
        body: dict[str, Any] = {"limit": limit, "windowSeconds": window_seconds, "status": status}
        if user:
            body["user"] = user
        self._call("POST", "rate-limit", body)

    def invalidate_sync_tokens(self, calendar_id: str) -> None:
        """Every sync token issued so far for the calendar answers 410 fullSyncRequired."""
        self._call("POST", "sync-tokens/invalidate", {"calendarId": calendar_id})

    def set_invalid_grant(self, user: str, enabled: bool = True) -> None:
        """Make /token answer invalid_grant for ``user`` (and revoke the user's access token)."""
        self._call("POST", "auth/invalid-grant", {"user": user, "enabled": enabled})

    def register_refresh_token(self, refresh_token: str, user: str) -> None:
        """Map a refresh token to a user (``rt:<user>`` works without this)."""
        self._call("POST", "auth/refresh-tokens", {"refreshToken": refresh_token, "user": user})

    def issue_auth_code(
        self,
        user: str,
        redirect_uri: str,
        scopes: Iterable[str],
        *,
        granted_scopes: Iterable[str] | None = None,
        code_challenge: str | None = None,
        code_challenge_method: str = "S256",
        email_verified: bool = True,
        audience: str | None = None,
        refresh_token: bool = True,
    ) -> str:
        """A one-use authorization code, as if ``user`` consented to ``scopes``.

        ``granted_scopes``: the user granted only these; ``email_verified``, ``audience``
        (the ID token's ``aud``, else the redeeming client id) and ``refresh_token``
        (False: none comes back) make the exchange answer as Google sometimes does.
        """
        body: dict[str, Any] = {
            "user": user,
            "redirect_uri": redirect_uri,
            "scopes": list(scopes),
            "code_challenge_method": code_challenge_method,
            "email_verified": email_verified,
            "refresh_token": refresh_token,
        }
        if granted_scopes is not None:
            body["granted_scopes"] = list(granted_scopes)
        if code_challenge is not None:
            body["code_challenge"] = code_challenge
        if audience is not None:
            body["audience"] = audience
        return str(self._call("POST", "auth/codes", body)["code"])

    def register_oauth_client(self, client_id: str, client_secret: str) -> None:
        """From now on /token answers 401 invalid_client to every other client."""
        self._call("POST", "auth/clients", {"client_id": client_id, "client_secret": client_secret})

    def expire_access_tokens(self, user: str) -> None:
        """With auth enforced, the user's access token answers 401 until refreshed."""
        self._call("POST", "auth/expire", {"user": user})

    # -- quotas ----------------------------------------------------------------------------------

    def quotas(self) -> dict[str, Any]:
        """The quota settings in force (``None`` limits are not enforced)."""
        return dict(self._call("GET", "quotas"))

    def set_quotas(
        self,
        project_per_minute: int | None = None,
        user_per_minute: int | None = None,
        *,
        project_status: int = 403,
        window_seconds: float = 60.0,
        day_time_zone: str = "America/Los_Angeles",
    ) -> dict[str, Any]:
        """Enforce Google's quotas (10,000 and 600 per minute) or others; None is no limit.

        Over the per-user limit: 403 ``userRateLimitExceeded``; over the project limit
        ``project_status`` (403 or 429) ``rateLimitExceeded``. Windows start empty.
        """
        body = {
            "projectPerMinute": project_per_minute,
            "userPerMinute": user_per_minute,
            "projectStatus": project_status,
            "windowSeconds": window_seconds,
            "dayTimeZone": day_time_zone,
        }
        return dict(self._call("POST", "quotas", body))

    def quota_usage(self) -> dict[str, Any]:
        """Requests and refusals per project and per user per day: ``{day, timeZone,
        projects: {p: {day: {requests, refused}}}, users: {u: {day: {...}}}}``."""
        return dict(self._call("GET", "quotas/usage"))

    def charge_quota(self, count: int, user: str = "other", project: str | None = None) -> None:
        """Count ``count`` requests as made now by ``user`` (traffic from elsewhere)."""
        body: dict[str, Any] = {"count": count, "user": user}
        if project:
            body["project"] = project
        self._call("POST", "quotas/charge", body)

    # -- push ----------------------------------------------------------------------------------

    def set_notification_faults(
        self,
        channel_id: str | None = None,
        *,
        drop: int = 0,
        delay: float = 0.0,
        duplicate: int = 0,
        merge_window: float = 0.0,
        paused: bool = False,
    ) -> None:
        """Set delivery faults of one channel, or of all (replacing per-channel ones) with None."""
        body: dict[str, Any] = {
            "drop": drop,
            "delay": delay,
            "duplicate": duplicate,
            "mergeWindow": merge_window,
            "paused": paused,
        }
        if channel_id:
            body["channelId"] = channel_id
        self._call("POST", "notifications/faults", body)

    def drop_notifications(self, count: int, channel_id: str | None = None) -> None:
        """Drop the next ``count`` change notifications."""
        self.set_notification_faults(channel_id, drop=count)

    def delay_notifications(self, seconds: float, channel_id: str | None = None) -> None:
        """Deliver change notifications ``seconds`` late."""
        self.set_notification_faults(channel_id, delay=seconds)

    def duplicate_notifications(self, count: int, channel_id: str | None = None) -> None:
        """Deliver the next ``count`` change notifications twice."""
        self.set_notification_faults(channel_id, duplicate=count)

    def merge_notifications(self, window_seconds: float, channel_id: str | None = None) -> None:
        """Coalesce changes within ``window_seconds`` into one notification (latest number)."""
        self.set_notification_faults(channel_id, merge_window=window_seconds)

    def pause_notifications(self, paused: bool = True, channel_id: str | None = None) -> None:
        """Hold change notifications until un-paused (un-pausing releases them)."""
        self.set_notification_faults(channel_id, paused=paused)

    def clear_notification_faults(self, channel_id: str | None = None) -> None:
        """Back to reliable delivery (releases held notifications)."""
        self.set_notification_faults(channel_id)

    def flush_notifications(self, timeout: float = 10.0) -> bool:
        """Wait until no notification is queued or in flight (held ones excepted)."""
        return bool(self._call("POST", "notifications/flush", {"timeout": timeout})["idle"])

    def expire_channel(self, channel_id: str) -> None:
        """Make a channel expire now: it delivers nothing more."""
        self._call("POST", "channels/expire", {"id": channel_id})

    def channels(self) -> list[dict[str, Any]]:
        """Every channel with its state (stopped, expired, last message number, address)."""
        return list(self._call("GET", "channels")["channels"])

    # -- clock, counters, settings -----------------------------------------------------------

    def advance_clock(self, seconds: float) -> str:
        """Move the emulator clock (updated, channel and token expiry); returns the new time."""
        return str(self._call("POST", "clock/advance", {"seconds": seconds})["now"])

    def freeze_clock(self, frozen: bool = True) -> str:
        """Stop the emulator clock (only ``advance_clock`` moves it) or, False, run it on."""
        return str(self._call("POST", "clock/freeze", {"frozen": frozen})["now"])

    def now(self) -> str:
        """The emulator's current time (RFC 3339)."""
        return str(self._call("GET", "clock")["now"])

    def counters(self) -> dict[str, dict[str, int]]:
        """``calls``/``items`` per method, ``notifications`` outcomes (``by_channel``: dropped,
        duplicated and delivered per channel, as ``outcome:channel id``), ``tokens`` grants."""
        return dict(self._call("GET", "counters"))

    def reset_counters(self) -> None:
        """Zero every counter."""
        self._call("POST", "counters/reset")

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Change settings (see ``control_routes._settings`` for the names); returns them all."""
        return dict(self._call("POST", "settings", settings))

    def set_sync_order(self, order: str) -> None:
        """Send the initial sync ``async``, ``before`` or ``after`` the watch response."""
        self.configure(syncOrder=order)
