"""Every Firestore query calsync makes, and what must (not) be indexed.

One catalogue for the store, Terraform and the tests (DESIGN.md, "Apply-time
facts"): each composite query needs a `google_firestore_index`; each
single-field query needs its field left indexed; payload fields that no query
uses are exempt from indexing (no index-entry limit, no write hot-spots on
steadily increasing values), and an exemption must never hit a queried field.

Collection names are collection *groups*: `events` and `changes` live under
`subscriptions/{id}/`; `state` under both `subscriptions/{id}/` and `accounts/{id}/`.
"""

from __future__ import annotations

from typing import Any

SUBSCRIPTIONS = "subscriptions"
SUBSCRIPTION_KEYS = "subscription_keys"
ACCOUNTS = "accounts"
ACCOUNT_KEYS = "account_keys"
CHANNELS = "channels"
CREDENTIALS = "credentials"
EVENTS = "events"
CHANGES = "changes"
STATE = "state"
WRITER = "writer"
# Owners' Calendar call budgets, `{owner hash}-{share}` (functions.sync.budget); read
# and written by id only, never queried.
CALL_BUDGETS = "call_budgets"

# Queries that filter on one field and range or order on another: one
# composite index each, fields in index order (equality first).
QUERIES: list[dict[str, Any]] = [
    # Renewer: channels in a state whose expiration falls within a window (active:
    # renewal; pending: retries, whose expiration is their next attempt;
    # abandoned: records to delete).
    {"collection": CHANNELS, "fields": [("state", "ASCENDING"), ("expiration", "ASCENDING")]},
    # Renewer fan-out: one shard's channels in a state within a window (shard `==`,
    # or `in` over the shard values one task covers; Firestore merges them in
    # expiration order, each served by this index).
    {"collection": CHANNELS,
     "fields": [("state", "ASCENDING"), ("shard", "ASCENDING"), ("expiration", "ASCENDING")]},
    # Renewer: the oldest request of an active subscription (the alert on
    # requests left waiting).
    {"collection": SUBSCRIPTIONS,
     "fields": [("status", "ASCENDING"), ("requested_at", "ASCENDING")]},
]

# Queries on a single field, served by Firestore's automatic single-field
# indexes: these fields must never be exempted.
SINGLE_FIELD_QUERIES: list[tuple[str, str]] = [
    (EVENTS, "_deleted"),             # live snapshots, for reconciliation
    (EVENTS, "_recurring_event_id"),  # a deleted series' stored exceptions
    (CHANGES, "seq"),                 # the feed after a cursor
    (CHANNELS, "sub_id"),             # a subscription's channels
    (SUBSCRIPTIONS, "status"),        # listing by status
    (SUBSCRIPTIONS, "labels"),        # the API's listing by label (labels.KEY ==)
    (CHANNELS, "state"),              # a subscription's delivering channels
    # The renewer's sort keys: each set only while there is something to look at,
    # so a range on the one field finds exactly the due rows (no composite index).
    (SUBSCRIPTIONS, "sweep_at"),        # requests the sweep looks at
    (SUBSCRIPTIONS, "safety_net_at"),   # subscriptions the safety net looks at
    (SUBSCRIPTIONS, "deleting_since"),  # unsubscribes to finish
    # Accounts: the subscriptions an account follows (`?account=`, its reconciliation
    # and health, with status and labels as further equality filters), its
    # calendar-list channels, removed subscriptions whose retention ended, and the
    # renewer's sort keys of accounts (as for subscriptions).
    (SUBSCRIPTIONS, "account_id"),
    (SUBSCRIPTIONS, "credentials_ref"),  # is a replaced credential still used anywhere?
    (ACCOUNTS, "credentials_ref"),
    (SUBSCRIPTIONS, "purge_at"),
    (CHANNELS, "account_id"),
    (ACCOUNTS, "sweep_at"),
    (ACCOUNTS, "safety_net_at"),
    (ACCOUNTS, "deleting_since"),
]

# Single-field queries over a whole collection group (not one subscription's
# subcollection): Firestore's automatic indexes are collection-scoped, so each
# needs a single-field index with query scope COLLECTION_GROUP (terraform:
# a `google_firestore_field` override that keeps the collection-scope indexes
# too).
COLLECTION_GROUP_QUERIES: list[tuple[str, str]] = [
    # Renewer outbox sweep: `state/writer` documents with entries left unpublished,
    # by when each is next due (a row whose runs keep failing moves out of the way)...
    (STATE, "publish_sweep_at"),
    # ...and the oldest of them (the outbox-age alert), and rows written before
    # `publish_sweep_at` existed.
    (STATE, "publish_pending_since"),
]

# Payload fields no query uses: exempt from single-field indexing.
INDEX_EXEMPTIONS: list[tuple[str, str]] = [
    (EVENTS, "event"),
    (EVENTS, "_synced_at"),
    (EVENTS, "_seq"),
    (CHANGES, "fields"),
    (CHANGES, "at"),
    (CHANGES, "etag"),
    (CHANGES, "expire_at"),
    (CREDENTIALS, "sealed_refresh_token"),
]

# Firestore TTL policies: documents are deleted once this field's time passed.
TTL_FIELDS: list[tuple[str, str]] = [
    (CHANGES, "expire_at"),
]


def queried_fields() -> set[tuple[str, str]]:
    """Every (collection group, field) some query filters or orders on."""
    fields = set(SINGLE_FIELD_QUERIES) | set(COLLECTION_GROUP_QUERIES)
    for query in QUERIES:
        fields.update((query["collection"], path) for path, _ in query["fields"])
    return fields
