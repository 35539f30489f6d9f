"""The read side of the consumer API: the change feed by cursor, and the current events.

The documents come from a `ports.FeedStore` (Firestore:
`adapters.firestore.feed`). Changes (`seq > cursor`, ascending) are read in one
read-only transaction together with `state/writer.change_seq`, so a page is checked against one
consistent view: a cursor beyond `change_seq` is refused, and because `seq` is
dense, any hole met while reading (an entry the TTL policy removed) or an entry
whose `expire_at` has passed means the cursor is older than the retained feed
(`CursorExpired`, with the oldest `seq` still available). `kinds` and `fields`
filter entries but never projections: `limit` counts the entries *scanned* and
`next_cursor` is the last one scanned, so filtering never skips or repeats.

The bootstrap protocol (DESIGN.md, "Bootstrap"):

1. `events()` without a page token reads the first page of snapshots and
   `change_seq` in ONE read-only transaction; that `change_seq` is the page's
   `as_of_seq`, carried in every later page token.
2. The consumer reads every page, then follows `changes(cursor=as_of_seq)`.

No gap: every change after `as_of_seq` is an entry with `seq > as_of_seq`, and
every change up to it is already in the snapshot the first page saw or, for
later pages, in an even newer snapshot. No double that matters: a later page
may show an event in a state newer than `as_of_seq`, and the entry that made
it is then applied again; entries carry the full `after` value of each field
they change (and whole resources for `created`), so re-applying is harmless.
An event deleted before its page was read is in no page, yet entries after
`as_of_seq` may update it before its `deleted` entry: a consumer applies an
`updated` entry for an event it does not hold onto an empty record (its
deletion follows). `tests/integration/api/test_bootstrap.py` checks this with a writer committing
entries and snapshots while the pages are read.

Both pages carry `complete_as_of` (DESIGN.md, "Accounts, lifecycle events,
watermark"): the subscription's watermark, read in the same transaction as the
page (the first events page's is carried in the page token with `as_of_seq`).
Every change Google applied before it has an entry at a `seq` up to the page's
`change_seq` / `as_of_seq`: a consumer that has read the feed that far holds
every change made before that instant.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.api.tokens import PageTokens
from functions.errors import CursorExpired
from functions.model import UPDATED, Snapshot, entry_json, rfc3339
from functions.ports import FeedPort, FeedStore

EVENTS_TOKEN = "events"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ChangesQuery:
    cursor: int = 0
    limit: int = 100
    kinds: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    def passes(self, entry: dict[str, Any]) -> bool:
        if self.kinds and entry["kind"] not in self.kinds:
            return False
        if self.fields and entry["kind"] == UPDATED:
            # Only an `updated` entry lists some fields: created and deleted ones
            # carry every field, lifecycle entries none, and all of them pass.
            return any(name in entry["fields"] for name in self.fields)
        return True


@dataclass(frozen=True)
class ChangesPage:
    changes: list[dict[str, Any]]
    next_cursor: int
    has_more: bool
    scanned: int  # documents read from the feed (the bench's reads per request)
    complete_as_of: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"changes": self.changes, "next_cursor": self.next_cursor,
                "has_more": self.has_more, "complete_as_of": rfc3339(self.complete_as_of)}


@dataclass(frozen=True)
class EventsPage:
    events: list[dict[str, Any]]
    as_of_seq: int
    next_page_token: str | None
    complete_as_of: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "as_of_seq": self.as_of_seq,
                "next_page_token": self.next_page_token,
                "complete_as_of": rfc3339(self.complete_as_of)}


def event_json(event_id: str, snapshot: Snapshot) -> dict[str, Any]:
    """A stored snapshot as the API shows it: Google's resource plus our position."""
    resource = {k: v for k, v in snapshot.items() if not k.startswith("_")}
    seq = snapshot.get("_seq")
    return {"event_id": event_id, "seq": int(seq) if seq is not None else None,
            "deleted": bool(snapshot.get("_deleted", False)), "event": resource}


class Feed(FeedPort):
    """A subscription's feed and snapshots, paged, filtered and checked for retention."""

    def __init__(self, store: FeedStore, tokens: PageTokens,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock

    # -- changes --------------------------------------------------------------

    def changes(self, sub_id: str, query: ChangesQuery) -> ChangesPage:
        head, scanned = self._store.read_changes(sub_id, query.cursor, query.limit)
        change_seq = head.change_seq
        self._check_retained(sub_id, query, scanned, change_seq)
        next_cursor = int(scanned[-1]["seq"]) if scanned else query.cursor
        entries = [entry_json(data) for data in scanned]
        return ChangesPage(changes=[e for e in entries if query.passes(e)],
                           next_cursor=next_cursor, has_more=next_cursor < change_seq,
                           scanned=len(scanned), complete_as_of=head.complete_as_of)

    def _check_retained(self, sub_id: str, query: ChangesQuery,
                        scanned: list[dict[str, Any]], change_seq: int) -> None:
        now = self._clock()
        expected = query.cursor + 1
        for data in scanned:
            expire_at = data.get("expire_at")
            if int(data.get("seq", -1)) != expected or (expire_at is not None
                                                        and expire_at <= now):
                break
            expected += 1
        else:
            if len(scanned) == query.limit or expected > change_seq:
                return
        raise CursorExpired(query.cursor, self.oldest_available_seq(
            sub_id, query.cursor + 1, change_seq))

    def oldest_available_seq(self, sub_id: str, low: int, high: int) -> int:
        """The first retained `seq` in [low, high], or `high + 1` if none is.

        Expired entries form a prefix of the feed (`expire_at` grows with
        `seq`, and the TTL policy deletes only expired ones), so "present and
        not expired" flips once: a binary search of point reads.
        """
        now = self._clock()

        def retained(seq: int) -> bool:
            data = self._store.change_entry(sub_id, seq)
            if data is None:
                return False
            expire_at = data.get("expire_at")
            return expire_at is None or expire_at > now

        low = max(low, 1)
        answer = high + 1
        while low <= high:
            middle = (low + high) // 2
            if retained(middle):
                answer, high = middle, middle - 1
            else:
                low = middle + 1
        return answer

    # -- events ---------------------------------------------------------------

    def events(self, sub_id: str, page_token: str | None, limit: int,
               include_deleted: bool) -> EventsPage:
        scope = f"{sub_id}\x00{int(include_deleted)}"
        complete_as_of: datetime | None = None
        if page_token is None:
            head, docs = self._store.first_events(sub_id, limit + 1, include_deleted)
            as_of_seq, complete_as_of = head.change_seq, head.complete_as_of
        else:
            fields = self._tokens.decode(page_token, EVENTS_TOKEN, scope)
            as_of, last, watermark = fields.get("a"), fields.get("l"), fields.get("w")
            if not isinstance(as_of, int) or not isinstance(last, str):
                raise ValueError("page token fields")  # unreachable for a token we signed
            as_of_seq = as_of
            if isinstance(watermark, int):  # microseconds since the epoch
                complete_as_of = _EPOCH + timedelta(microseconds=watermark)
            docs = self._store.events_after(sub_id, last, limit + 1, include_deleted)
        page, more = docs[:limit], len(docs) > limit
        token = None
        if more:
            carried: dict[str, Any] = {"a": as_of_seq, "l": page[-1][0]}
            if complete_as_of is not None:  # every page shows the first page's
                carried["w"] = (complete_as_of - _EPOCH) // timedelta(microseconds=1)
            token = self._tokens.encode(EVENTS_TOKEN, scope, carried)
        return EventsPage(events=[event_json(event_id, snapshot) for event_id, snapshot in page],
                          as_of_seq=as_of_seq, next_page_token=token,
                          complete_as_of=complete_as_of)

    def event(self, sub_id: str, event_id: str) -> dict[str, Any]:
        return event_json(event_id, self._store.event(sub_id, event_id))
