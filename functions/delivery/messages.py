"""The Pub/Sub message of a change entry, and Pub/Sub's limits checked before sending.

DESIGN.md, "Delivery (outbox)" and "Accounts, lifecycle events, watermark": data =
the entry as JSON, byte for byte what the changes route prints for it;
CloudEvents attributes in the Pub/Sub binary binding plus plain
`subscription_id`, `seq`, `kind`, `event_id` (event entries only), one
`label_KEY` per label, `complete_as_of` (the subscription's watermark when the
message was built) and, on an `updated` entry, `changed_<field>` = `true` per
changed top-level field, so a subscription filter such as
`attributes:changed_start OR attributes:changed_end` receives only time changes.

The field attributes are all or nothing: when they would take the message past
Pub/Sub's 100 attributes (with the others, labels included, which are always
kept) or one key past 256 bytes, none is sent and `changed_fields_truncated` =
`true` says the fields are in the data only. Lifecycle entries
(`model.LIFECYCLE_KINDS`) have their own CloudEvents types
(`dev.calsync.subscription.*`, `dev.calsync.account.*`) and no event id.

Pub/Sub refuses a message with more than 100 attributes, a key over 256 bytes, a
value over 1,024 bytes or more than 10 MB in all: such a message goes straight
to its marker (same `seq`, `truncated=true`, labels and field attributes kept,
so a filtered subscription still gets it), with no round trip to find it.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from functions.model import (
    ACCOUNT_EVENT_KINDS,
    CHANGE_KINDS,
    DELETED_KIND,
    UPDATED,
    Subscription,
    entry_json,
    rfc3339,
)
from functions.ports import OutMessage

EVENT_TYPE = "dev.calsync.event.{kind}"
SUBSCRIPTION_TYPE = "dev.calsync.subscription.{kind}"
ACCOUNT_TYPE = "dev.calsync.account.{kind}"
# The entry kind is `subscription_deleted` (`deleted` is an event's); the type keeps
# DESIGN's short name.
_SHORT_TYPES = {DELETED_KIND: "deleted"}
CHANGED_PREFIX = "changed_"
FIELDS_TRUNCATED = "changed_fields_truncated"
MAX_ATTRIBUTES = 100
MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 1024
MAX_MESSAGE_BYTES = 10_000_000  # data, attributes and ordering key together


def _json_default(value: Any) -> Any:
    converted = rfc3339(value)
    return converted if converted is not value else str(value)


def entry_bytes(entry: dict[str, Any]) -> bytes:
    """An entry in its wire form (`entry_json`), encoded as the `/v1` routes encode
    their bodies (`api.service.Answer.text`): compact, ASCII-escaped."""
    return json.dumps(entry, default=_json_default, separators=(",", ":")).encode()


def _fit(value: str) -> str:
    """`value` cut to Pub/Sub's attribute value limit, on a character boundary."""
    encoded = value.encode()
    if len(encoded) <= MAX_VALUE_BYTES:
        return value
    return encoded[:MAX_VALUE_BYTES].decode("utf-8", "ignore")


def event_type(kind: str) -> str:
    """The CloudEvents type of an entry of `kind` (a kind a later calsync adds to a
    subscription's feed is a `dev.calsync.subscription.*` one)."""
    if kind in CHANGE_KINDS:
        return EVENT_TYPE.format(kind=kind)
    if kind in ACCOUNT_EVENT_KINDS:
        return ACCOUNT_TYPE.format(kind=kind)
    return SUBSCRIPTION_TYPE.format(kind=_SHORT_TYPES.get(kind, kind))


def changed_attributes(entry: dict[str, Any], room: int) -> dict[str, str]:
    """`changed_<field>` = `true` for each field an `updated` entry changed, if all
    of them fit in `room` attributes (and each key in 256 bytes); otherwise only
    `changed_fields_truncated` = `true` (the fields are in the data). Other kinds:
    none (a created or deleted entry carries every field)."""
    if entry.get("kind") != UPDATED:
        return {}
    keys = [CHANGED_PREFIX + name for name in sorted(entry.get("fields") or {})]
    if len(keys) <= room and all(len(key.encode()) <= MAX_KEY_BYTES for key in keys):
        return dict.fromkeys(keys, "true")
    return {FIELDS_TRUNCATED: "true"} if room > 0 else {}


def _attributes(entry: dict[str, Any], subscription: Subscription, project: str,
                event_id: str | None, complete_as_of: datetime | None,
                reserve: int = 0) -> dict[str, str]:
    sub_id, seq = subscription.id, str(entry["seq"])
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": f"{sub_id}/{seq}",
        "ce-source": f"//calsync/projects/{project}/subscriptions/{sub_id}",
        "ce-type": event_type(str(entry["kind"])),
        "content-type": "application/json",
        "subscription_id": sub_id,
        "seq": seq,
        "kind": str(entry["kind"]),
    }
    if event_id is not None:  # lifecycle entries concern the subscription itself
        attributes["ce-subject"] = attributes["event_id"] = event_id
    if entry.get("at"):
        attributes["ce-time"] = str(entry["at"])
    if complete_as_of is not None:
        attributes["complete_as_of"] = str(rfc3339(complete_as_of))
    attributes.update({f"label_{key}": str(value)
                       for key, value in subscription.labels.items()})
    attributes.update(changed_attributes(entry, MAX_ATTRIBUTES - reserve - len(attributes)))
    return attributes


def message_for(doc: dict[str, Any], subscription: Subscription, project: str,
                complete_as_of: datetime | None = None) -> OutMessage:
    """The message of one stored entry (decoded)."""
    entry = entry_json(doc)
    event_id = entry["event_id"]
    return OutMessage(entry_bytes(entry),
                      _attributes(entry, subscription, project,
                                  None if event_id is None else str(event_id), complete_as_of))


def marker_for(doc: dict[str, Any], subscription: Subscription, project: str,
               complete_as_of: datetime | None = None) -> OutMessage:
    """What replaces a message Pub/Sub would refuse: same `seq`, labels and field
    attributes, `truncated=true`; the consumer reads the entry from the changes route."""
    entry = entry_json(doc)
    small = {"seq": entry["seq"], "kind": entry["kind"], "event_id": entry["event_id"],
             "truncated": True}
    event_id = entry["event_id"]
    attributes = _attributes(entry, subscription, project,
                             None if event_id is None else _fit(str(event_id)), complete_as_of,
                             reserve=1)
    attributes["truncated"] = "true"
    return OutMessage(entry_bytes(small), attributes)


def problem(message: OutMessage, ordering_key: str) -> str | None:
    """Why Pub/Sub would refuse `message` (None: it would not)."""
    attributes = message.attributes
    if len(attributes) > MAX_ATTRIBUTES:
        return f"{len(attributes)} attributes, over Pub/Sub's {MAX_ATTRIBUTES}"
    size = len(message.data) + len(ordering_key.encode())
    for key, value in attributes.items():
        # A character is at most 4 bytes: only a long string needs encoding.
        key_bytes = len(key.encode()) if len(key) * 4 > MAX_KEY_BYTES else len(key)
        value_bytes = len(value.encode()) if len(value) * 4 > MAX_VALUE_BYTES else len(value)
        if key_bytes > MAX_KEY_BYTES:
            return f"attribute key {key[:40]!r}… is {key_bytes} bytes, over {MAX_KEY_BYTES}"
        if value_bytes > MAX_VALUE_BYTES:
            return f"attribute {key[:40]!r} is {value_bytes} bytes, over {MAX_VALUE_BYTES}"
        size += key_bytes + value_bytes
    if size > MAX_MESSAGE_BYTES:
        return f"message of {size} bytes, over Pub/Sub's {MAX_MESSAGE_BYTES}"
    return None


def message_size(message: OutMessage) -> int:
    """Bytes a message holds in flight (data and attributes)."""
    return len(message.data) + sum(len(k) + len(v) for k, v in message.attributes.items())
