"""The push handler: a WSGI app that applies each pushed entry once, in `seq`
order per subscription, reading what it missed from the API."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any

from .auth import PushIdentity
from .feed import CursorExpired, FeedClient, FeedUnavailable
from .push import Environ, Rejected, StartResponse, answer, parse_push, read_body
from .store import (
    ACCOUNT_KINDS,
    ERROR_KINDS,
    EVENT_KINDS,
    RECOVERED,
    RESYNC_REQUIRED,
    SUBSCRIPTION_DELETED,
    ConsumerStore,
    Resource,
    SqliteConsumerStore,
)

MAX_PAGE = 1000  # the API's largest page


class Consumer:
    """Pub/Sub push endpoint over a `ConsumerStore`.

    `push_auth` verifies each push's token; None accepts every push, which only
    the local stack may do (`startup.from_env` builds one only with the
    insecure flag). Pushes of one subscription are handled one at a time (a
    lock per subscription, never one for all: a subscription waiting on the API
    holds up no other).
    """

    def __init__(self, feed: FeedClient, *, push_auth: PushIdentity | None = None,
                 store: ConsumerStore | None = None, out: Callable[[str], None] = print,
                 start_cursors: dict[str, int] | None = None, page_size: int = MAX_PAGE,
                 max_bootstraps: int = 2) -> None:
        self._feed = feed
        self._push_auth = push_auth
        # Without a store the position lives in memory: tests and one-off runs only.
        self.store = store if store is not None else SqliteConsumerStore(":memory:")
        self._out = out
        self._page_size = max(1, min(page_size, MAX_PAGE))
        self._max_bootstraps = max_bootstraps  # per push; then Pub/Sub retries it later
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()  # only to find a subscription's lock
        for sub_id, cursor in (start_cursors or {}).items():
            self.store.seed(sub_id, cursor)

    @property
    def applied(self) -> PositionView:
        """The last applied `seq` by subscription (`applied[sub_id]`)."""
        return PositionView(self.store)

    # -- WSGI -------------------------------------------------------------------

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                raise Rejected("405 Method Not Allowed", "only POST is accepted")
            if self._push_auth is not None:
                self._push_auth.verify(environ.get("HTTP_AUTHORIZATION", ""))
            message = parse_push(read_body(environ))
            with self._lock_for(message["attributes"]["subscription_id"]):
                self.handle(message)
        except Rejected as err:
            return answer(start_response, err.status, str(err))
        except FeedUnavailable as err:  # let Pub/Sub redeliver (bounded: dead-lettering)
            return answer(start_response, "503 Service Unavailable", str(err))
        start_response("204 No Content", [])
        return [b""]

    def _lock_for(self, sub_id: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sub_id, threading.Lock())

    # -- the steps ----------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> list[int]:
        """Apply one pushed entry (and any gap before it); the seqs applied."""
        attributes = message["attributes"]
        sub_id, seq = attributes["subscription_id"], int(attributes["seq"])
        last = self.store.position(sub_id)
        if seq <= last:
            return []  # a duplicate: already applied (or covered by a bootstrap)
        if seq == last + 1 and attributes.get("truncated") != "true":
            return self._commit(sub_id, last, [message["entry"]])[1]
        # A gap, a truncated marker, or a subscription never seen (position 0):
        # the feed is the source of truth.
        return self._catch_up(sub_id, last, seq)

    def _catch_up(self, sub_id: str, cursor: int, upto: int) -> list[int]:
        applied: list[int] = []
        bootstraps = 0
        while cursor < upto:
            try:
                page = self._feed.changes(sub_id, cursor, min(upto - cursor, self._page_size))
            except CursorExpired as expired:
                # Past retention: start again from the current events (DESIGN.md,
                # "Retention"); answering 503 would only have Pub/Sub redeliver
                # this message until it and all after it are dead-lettered.
                if bootstraps == self._max_bootstraps:
                    raise Rejected("503 Service Unavailable",
                                   f"the feed after seq {cursor} expired again during "
                                   f"{bootstraps} bootstraps") from expired
                bootstraps += 1
                why = f" (the feed before seq {expired.oldest_available_seq} has expired)" \
                    if expired.oldest_available_seq else ""
                cursor = self._bootstrap(sub_id, cursor, why)
                continue
            entries = _dense(page.get("changes") or [], cursor, upto)
            if not entries:
                break
            cursor, handled = self._commit(sub_id, cursor, entries)
            applied += handled
        if cursor < upto:
            # Not readable yet: answer non-2xx, so Pub/Sub redelivers this message.
            raise Rejected("503 Service Unavailable", f"seq {cursor + 1}..{upto} not readable yet")
        return applied

    def _bootstrap(self, sub_id: str, after: int, why: str) -> int:
        """Replace the copy with the current events; the `as_of_seq` to follow on from.

        The pages are gathered first and written in one transaction: a crash
        half-way leaves the old copy and position, and the next push starts again.
        """
        events: dict[str, Resource] = {}
        as_of_seq: int | None = None
        token: str | None = None
        while True:
            page = self._feed.events(sub_id, token, self._page_size)
            if as_of_seq is None:
                as_of_seq = int(page["as_of_seq"])  # read with the first page
            for item in page.get("events") or []:
                if not item.get("deleted"):
                    events[str(item["event_id"])] = dict(item.get("event") or {})
            token = page.get("next_page_token")
            if not token:
                break
        if not self.store.replace(sub_id, after, events, as_of_seq):
            raise Rejected("503 Service Unavailable",
                           "position moved during the bootstrap (another worker)")
        self._out(f"subscription {sub_id}, bootstrapped at seq {as_of_seq}: "
                  f"{len(events)} events{why}")
        return as_of_seq

    def _commit(self, sub_id: str, after: int,
                entries: list[dict[str, Any]]) -> tuple[int, list[int]]:
        """Apply dense entries after `after`: (the position now, the seqs handled).

        A `resync_required` entry (Google expired the sync token and calsync listed
        the calendar in full again) bootstraps the copy again: the entries before
        it are applied first, the position then jumps to the bootstrap's
        `as_of_seq` (at least its own seq), and later entries it covers are skipped.
        """
        position, handled = after, []
        run: list[dict[str, Any]] = []
        for entry in entries:
            seq = int(entry["seq"])
            if seq <= position + len(run):
                continue  # covered by the bootstrap just done
            if entry.get("kind") != RESYNC_REQUIRED:
                run.append(entry)
                continue
            position = self._apply(sub_id, position, run)
            handled += [int(e["seq"]) for e in run]
            run = []
            self._out(describe(sub_id, entry))
            position = self._bootstrap(sub_id, position, " (resync_required)")
            handled.append(seq)
        position = self._apply(sub_id, position, run)
        return position, handled + [int(e["seq"]) for e in run]

    def _apply(self, sub_id: str, after: int, entries: list[dict[str, Any]]) -> int:
        if not entries:
            return after
        if not self.store.apply(sub_id, after, entries):
            # Another worker (process) applied meanwhile: retry, then it is a duplicate.
            raise Rejected("503 Service Unavailable", "position moved meanwhile (another worker)")
        for entry in entries:
            self._out(describe(sub_id, entry))
        return int(entries[-1]["seq"])


class PositionView:
    """`applied[sub_id]`: the store's position, KeyError for one never seen."""

    def __init__(self, store: ConsumerStore) -> None:
        self._store = store

    def __getitem__(self, sub_id: str) -> int:
        position = self._store.position(sub_id)
        if position == 0:
            raise KeyError(sub_id)
        return position

    def get(self, sub_id: str, default: int | None = None) -> int | None:
        return self._store.position(sub_id) or default


def _dense(changes: list[dict[str, Any]], cursor: int, upto: int) -> list[dict[str, Any]]:
    """The entries `cursor+1 ..` up to `upto` with no hole (the API never leaves one)."""
    dense: list[dict[str, Any]] = []
    for entry in changes:
        seq = int(entry["seq"])
        if seq != cursor + len(dense) + 1 or seq > upto:
            break
        dense.append(entry)
    return dense


def describe(sub_id: str, entry: dict[str, Any]) -> str:
    """The line printed for one change entry."""
    head = f"subscription {sub_id}, seq {entry['seq']}, {entry['kind']}"
    kind, details = entry["kind"], entry.get("details") or {}
    if kind in ERROR_KINDS:
        # Reported: nothing syncs until the owner connects again or it is resumed.
        then = ("the owner must connect again" if kind == "reauthorization_required"
                else "syncing stopped")
        return f"{head}: {details.get('reason') or 'unknown'}, {then} (reported)"
    if kind == RECOVERED:
        return f"{head}: syncing again (resumed)"
    if kind == SUBSCRIPTION_DELETED:
        return f"{head}: the subscription is deleted (copy dropped)"
    if kind == RESYNC_REQUIRED:
        return f"{head}: listed in full again (bootstrapping)"
    if kind in ACCOUNT_KINDS:
        return f"{head}: {details.get('calendar_id') or '?'} (reported)"
    if kind not in EVENT_KINDS:
        return f"{head}: skipped (a kind this consumer does not know)"
    fields = entry.get("fields") or {}
    if entry["kind"] == "updated":
        parts = [f"{name} {_show(change.get('before'))} → {_show(change.get('after'))}"
                 for name, change in sorted(fields.items())]
        return f"{head}: " + "; ".join(parts) if parts else head
    side = "after" if entry["kind"] == "created" else "before"
    summary = (fields.get("summary") or {}).get(side)
    return f"{head}: {_show(summary)} ({entry['event_id']})"


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
