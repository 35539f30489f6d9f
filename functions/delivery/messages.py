"""The Pub/Sub message of a change entry, and Pub/Sub's limits checked before sending.

DESIGN.md, "Delivery (outbox)": data = the entry as JSON, byte for byte what the
changes route prints for it; CloudEvents attributes in the Pub/Sub binary binding
plus plain `subscription_id`, `seq`, `kind`, `event_id` and one `label_KEY` per
label. Pub/Sub refuses a message with more than 100 attributes, a key over 256
bytes, a value over 1,024 bytes or more than 10 MB in all: such a message goes
straight to its marker (same `seq`, `truncated=true`, labels kept, so a
label-filtered subscription still gets it), with no round trip to find it.
"""

from __future__ import annotations

import json
from typing import Any

from functions.model import Subscription, entry_json, rfc3339
from functions.ports import OutMessage

EVENT_TYPE = "dev.calsync.event.{kind}"
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


def _attributes(entry: dict[str, Any], subscription: Subscription, project: str,
                event_id: str) -> dict[str, str]:
    sub_id, seq = subscription.id, str(entry["seq"])
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": f"{sub_id}/{seq}",
        "ce-source": f"//calsync/projects/{project}/subscriptions/{sub_id}",
        "ce-type": EVENT_TYPE.format(kind=entry["kind"]),
        "ce-subject": event_id,
        "content-type": "application/json",
        "subscription_id": sub_id,
        "seq": seq,
        "kind": str(entry["kind"]),
        "event_id": event_id,
    }
    if entry.get("at"):
        attributes["ce-time"] = str(entry["at"])
    attributes.update({f"label_{key}": str(value)
                       for key, value in subscription.labels.items()})
    return attributes


def message_for(doc: dict[str, Any], subscription: Subscription, project: str) -> OutMessage:
    """The message of one stored entry (decoded)."""
    entry = entry_json(doc)
    return OutMessage(entry_bytes(entry),
                      _attributes(entry, subscription, project, str(entry["event_id"])))


def marker_for(doc: dict[str, Any], subscription: Subscription, project: str) -> OutMessage:
    """What replaces a message Pub/Sub would refuse: same `seq` and labels,
    `truncated=true`; the consumer reads the entry from the changes route."""
    entry = entry_json(doc)
    small = {"seq": entry["seq"], "kind": entry["kind"], "event_id": entry["event_id"],
             "truncated": True}
    attributes = _attributes(entry, subscription, project, _fit(str(entry["event_id"])))
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
