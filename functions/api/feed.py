"""The read side of the consumer API: the change feed by cursor, and the current events.

Changes (`seq > cursor`, ascending) are read in one read-only transaction
together with `state/writer.change_seq`, so a page is checked against one
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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore import codec
from functions.adapters.firestore.catalogue import CHANGES, EVENTS, STATE, SUBSCRIPTIONS, WRITER
from functions.adapters.firestore.store import _translated, seq_id
from functions.api.tokens import PageTokens
from functions.api_ports import FeedPort
from functions.model import CREATED, DELETED

EVENTS_TOKEN = "events"


class SubscriptionMissing(LookupError):
    """No subscription with that id."""


class EventMissing(LookupError):
    """The subscription holds no snapshot of that event."""


class CursorAhead(ValueError):
    """The cursor is beyond the last `seq` issued."""

    def __init__(self, cursor: int, change_seq: int) -> None:
        super().__init__(f"cursor {cursor} is beyond the last change {change_seq}")
        self.cursor = cursor
        self.change_seq = change_seq


class CursorExpired(Exception):
    """Entries after the cursor are gone (retention): bootstrap again."""

    def __init__(self, cursor: int, oldest_available_seq: int) -> None:
        super().__init__(f"entries after cursor {cursor} are no longer retained; the oldest "
                         f"available is {oldest_available_seq}")
        self.cursor = cursor
        self.oldest_available_seq = oldest_available_seq


def rfc3339(value: Any) -> Any:
    """A datetime as RFC 3339 in UTC ending in `Z`; anything else unchanged."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


@dataclass(frozen=True)
class ChangesQuery:
    cursor: int = 0
    limit: int = 100
    kinds: tuple[str, ...] = ()
    fields: tuple[str, ...] = ()

    def passes(self, entry: dict[str, Any]) -> bool:
        if self.kinds and entry["kind"] not in self.kinds:
            return False
        if self.fields and entry["kind"] not in (CREATED, DELETED):
            return any(name in entry["fields"] for name in self.fields)
        return True


@dataclass(frozen=True)
class ChangesPage:
    changes: list[dict[str, Any]]
    next_cursor: int
    has_more: bool
    scanned: int  # documents read from the feed (the bench's reads per request)

    def to_json(self) -> dict[str, Any]:
        return {"changes": self.changes, "next_cursor": self.next_cursor,
                "has_more": self.has_more}


@dataclass(frozen=True)
class EventsPage:
    events: list[dict[str, Any]]
    as_of_seq: int
    next_page_token: str | None

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "as_of_seq": self.as_of_seq,
                "next_page_token": self.next_page_token}


def _data(snapshot: Any) -> dict[str, Any]:
    """A page's document data without `to_dict()`'s deep copy.

    The client already deep-copies each document into its snapshot; a second copy
    per document was a third of a 1,000-entry page's time (bench/api.py). The
    data is only read here, never changed.
    """
    data = getattr(snapshot, "_data", None)
    return data if isinstance(data, dict) else (snapshot.to_dict() or {})


def _unescaped(value: Any) -> Any:
    """`codec.unescape(value)`, sharing every part that holds no escaped key."""
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new_key = codec.unescape_key(key) if key.startswith(codec.ESCAPE) else key
            new_item = _unescaped(item)
            changed = changed or new_key is not key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    if isinstance(value, list):
        items = [_unescaped(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def entry_json(data: dict[str, Any]) -> dict[str, Any]:
    """A stored change entry as the API shows it (field names unescaped)."""
    return {
        "seq": int(data["seq"]),
        "kind": data.get("kind"),
        "event_id": data.get("event_id"),
        "recurring_event_id": data.get("recurring_event_id"),
        "fields": _unescaped(data.get("fields") or {}),
        "etag": data.get("etag"),
        "at": rfc3339(data.get("at")),
        "expire_at": rfc3339(data.get("expire_at")),
    }


def event_json(event_id: str, document: dict[str, Any]) -> dict[str, Any]:
    """A stored snapshot as the API shows it: Google's resource plus our position."""
    snapshot = codec.decode_snapshot(document)
    resource = {k: v for k, v in snapshot.items() if not k.startswith("_")}
    seq = snapshot.get("_seq")
    return {"event_id": event_id, "seq": int(seq) if seq is not None else None,
            "deleted": bool(snapshot.get("_deleted", False)), "event": resource}


class Feed(FeedPort):
    """Reads a subscription's feed and snapshots from Firestore."""

    def __init__(self, client: firestore.Client, tokens: PageTokens,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._tokens = tokens
        self._clock = clock

    def _sub(self, sub_id: str) -> Any:
        return self._client.collection(SUBSCRIPTIONS).document(sub_id)

    def _head(self, sub_id: str, transaction: Any) -> int:
        """`change_seq` of an existing subscription, read in `transaction`."""
        sub_ref, state_ref = self._sub(sub_id), self._sub(sub_id).collection(STATE).document(WRITER)
        found = {snap.reference.path: snap
                 for snap in self._client.get_all([sub_ref, state_ref], transaction=transaction)}
        sub_snap, state_snap = found.get(sub_ref.path), found.get(state_ref.path)
        if sub_snap is None or not sub_snap.exists:
            raise SubscriptionMissing(sub_id)
        state = (state_snap.to_dict() if state_snap is not None else None) or {}
        return int(state.get("change_seq") or 0)

    # -- changes --------------------------------------------------------------

    def changes(self, sub_id: str, query: ChangesQuery) -> ChangesPage:
        feed = self._sub(sub_id).collection(CHANGES)

        @firestore.transactional
        def read(transaction: Any) -> tuple[int, list[dict[str, Any]]]:
            change_seq = self._head(sub_id, transaction)
            if query.cursor > change_seq:
                raise CursorAhead(query.cursor, change_seq)
            if query.cursor == change_seq:
                return change_seq, []
            scan = (feed.where(filter=FieldFilter("seq", ">", query.cursor))
                    .order_by("seq").limit(query.limit))
            return change_seq, [_data(s) for s in scan.stream(transaction=transaction)]

        with _translated():
            change_seq, scanned = read(self._client.transaction(read_only=True))
        self._check_retained(sub_id, query, scanned, change_seq)
        next_cursor = int(scanned[-1]["seq"]) if scanned else query.cursor
        entries = [entry_json(data) for data in scanned]
        return ChangesPage(changes=[e for e in entries if query.passes(e)],
                           next_cursor=next_cursor, has_more=next_cursor < change_seq,
                           scanned=len(scanned))

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
        feed = self._sub(sub_id).collection(CHANGES)
        now = self._clock()

        def retained(seq: int) -> bool:
            with _translated():
                data = feed.document(seq_id(seq)).get().to_dict()
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
        collection = self._sub(sub_id).collection(EVENTS)
        base = collection
        if not include_deleted:
            base = base.where(filter=FieldFilter("_deleted", "==", False))
        base = base.order_by("__name__").limit(limit + 1)

        if page_token is None:
            @firestore.transactional
            def first(transaction: Any) -> tuple[int, list[Any]]:
                as_of = self._head(sub_id, transaction)
                return as_of, list(base.stream(transaction=transaction))

            with _translated():
                as_of_seq, docs = first(self._client.transaction(read_only=True))
        else:
            fields = self._tokens.decode(page_token, EVENTS_TOKEN, scope)
            as_of_seq, last = fields.get("a"), fields.get("l")
            if not isinstance(as_of_seq, int) or not isinstance(last, str):
                raise ValueError("page token fields")  # unreachable for a token we signed
            with _translated():
                if not self._sub(sub_id).get().exists:
                    raise SubscriptionMissing(sub_id)
                query = base.start_after({"__name__": collection.document(last)})
                docs = list(query.stream())
        page, more = docs[:limit], len(docs) > limit
        token = (self._tokens.encode(EVENTS_TOKEN, scope, {"a": as_of_seq, "l": page[-1].id})
                 if more else None)
        return EventsPage(events=[event_json(d.id, _data(d)) for d in page],
                          as_of_seq=as_of_seq, next_page_token=token)

    def event(self, sub_id: str, event_id: str) -> dict[str, Any]:
        sub_ref = self._sub(sub_id)
        event_ref = sub_ref.collection(EVENTS).document(event_id)
        with _translated():
            found = {s.reference.path: s for s in self._client.get_all([sub_ref, event_ref])}
        sub_snap, event_snap = found.get(sub_ref.path), found.get(event_ref.path)
        if sub_snap is None or not sub_snap.exists:
            raise SubscriptionMissing(sub_id)
        if event_snap is None or not event_snap.exists:
            raise EventMissing(event_id)
        return event_json(event_id, event_snap.to_dict() or {})
