"""An example consumer of calsync's Pub/Sub pushes, written to be copied
(DESIGN.md: "Delivery (outbox)", "Bootstrap", "Retention").

Run it from the repository root with `python -m examples.consumer --port 8090`
(or serve `startup.from_env()`, a WSGI app, under any WSGI server). For each
push it:

- verifies the Google-signed OIDC token Pub/Sub puts in `Authorization`:
  signature, issuer, audience, and `email` = the push subscription's service
  account with `email_verified` (`auth.py`). Without that identity it refuses
  to start: the audience alone proves nothing, any service account can mint a
  token for any audience;
- de-duplicates by `(subscription_id, seq)` against its durable position;
- fills a gap in `seq`, and reads a `truncated=true` marker's entry, from the
  changes route `GET {CALSYNC_API_URL}/v1/subscriptions/{id}/changes?cursor=N`;
- when that answers 410 `cursor_expired` (the gap is past retention),
  bootstraps again: `GET .../events` page by page replaces its copy of the
  events and its position becomes the `as_of_seq`; later entries follow on;
- acknowledges and skips entries of a kind it does not know (lifecycle
  messages such as `resync_required`, kinds a later calsync adds): the
  position moves past them, the copy is untouched (refusing them would have
  Pub/Sub redeliver them until they, and everything after them, are
  dead-lettered);
- prints one line per change, the subscription id in full, like
  `subscription 3f2a9c0d4e5b6a7c8d9e0f1a2b3c4d5e, seq 7, updated: summary
  'Kick-off' → 'Kick-off (all hands)'`.

Its position is durable (`store.py`): per subscription, the last applied
`seq` and the app's copy of the events, changed in one transaction, so a
restart skips nothing and a redelivery applies nothing twice.
`ConsumerStore` is the interface a real application backs with its own
database; `SqliteConsumerStore` is the example's. A subscription never seen
starts at position 0: its history is read from the changes route (or, if
that expired, bootstrapped from the events).

Pushes of one subscription are handled one at a time, different
subscriptions side by side (a lock per subscription, held across the API
calls of that subscription only). A 2xx acknowledges; a malformed push or a
bad token gets a 4xx with a one-line reason; 503 when the API cannot answer
now, so Pub/Sub redelivers it (and dead-letters it after its attempts).

Settings (environment):

- `CALSYNC_API_URL`: the `api` function's URL (called with an ID token of the
  runtime's service account, which must be in `api_invokers`).
- `CONSUMER_STATE_PATH`: the SQLite file holding the position (required).
- `CONSUMER_PUSH_SA`, `CONSUMER_AUDIENCE`: the push subscription's service
  account and audience (`terraform output pubsub`); required.
- `CONSUMER_INSECURE_NO_AUTH=1`: for the local stack only (the Pub/Sub
  emulator sends no token): accepts unauthenticated pushes, calls the API
  without an ID token, listens on loopback only, and says so on stderr.
- `CONSUMER_CERTS_URL`: tests only (a local key set instead of Google's).
"""

from .app import Consumer, PositionView, describe
from .auth import GOOGLE_ISSUERS, PushIdentity
from .feed import ChangesClient, CursorExpired, FeedClient, FeedUnavailable
from .push import Rejected, parse_push
from .startup import INSECURE_FLAG, StartRefused, from_env, main
from .store import EVENT_KINDS, ConsumerStore, SqliteConsumerStore, fold

__all__ = [
    "EVENT_KINDS", "GOOGLE_ISSUERS", "INSECURE_FLAG", "ChangesClient", "Consumer",
    "ConsumerStore", "CursorExpired", "FeedClient", "FeedUnavailable", "PositionView",
    "PushIdentity", "Rejected", "SqliteConsumerStore", "StartRefused", "describe", "fold",
    "from_env", "main", "parse_push",
]
