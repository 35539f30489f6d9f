"""Key rotation: which key ids are still in use, and re-sealing stored refresh tokens.

Two keyrings rotate (README, "Operator CLI"), each in two phases, because a
function instance reads its keys once, when it starts:

1. append the new key as *accepted* (`k1:old,k2:new`) and roll every function,
   so every instance can verify/open what the new key signs or seals;
2. promote it to *current* (`k2:new,k1:old`) and roll again: new channels
   are signed, new refresh tokens sealed, under k2;
3. `rotate-keys` re-seals every stored refresh token under the current key
   and reports what still uses an old key: a channel-token key stays in use
   until the channels it signed are replaced by the renewer or expire;
4. remove the old key once the report lists it as removable, and roll again.

A channel record carries `token_key_id`, the id of the key that signed its
token; records written before that field existed count as `unknown` (assume
they use any key). Only channels that can still deliver count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.adapters.firestore.catalogue import CHANNELS, CREDENTIALS
from functions.adapters.google.credentials import SealError, key_id_of, seal, unseal

SEALED_FIELD = "sealed_refresh_token"
TOKEN_KEY_FIELD = "token_key_id"
# Channels that may still deliver a notification whose token must verify.
DELIVERING = ("pending", "active", "replaced")


@dataclass(frozen=True)
class Unopenable:
    """A stored token that the configured keys cannot open (it stays as it is)."""

    credential_id: str
    key_id: str
    reason: str


@dataclass
class CredentialKeys:
    """Refresh tokens by the key that seals them (after re-sealing, unless a dry run)."""

    configured: list[str]
    sealed_by: dict[str, int] = field(default_factory=dict)
    resealed: int = 0
    unopenable: list[Unopenable] = field(default_factory=list)

    @property
    def current(self) -> str:
        return self.configured[0]

    @property
    def removable(self) -> list[str]:
        """Old configured keys that seal no stored token."""
        return [k for k in self.configured[1:] if not self.sealed_by.get(k)]


@dataclass
class ChannelKeys:
    """Delivering channels by the channel-token key that signed them."""

    in_use: dict[str, int] = field(default_factory=dict)
    unknown: int = 0  # records without `token_key_id`
    configured: list[str] | None = None  # None: CALSYNC_CHANNEL_TOKEN_KEYS not given

    @property
    def removable(self) -> list[str] | None:
        """Old configured keys no delivering channel uses; None if that cannot be told."""
        if self.configured is None:
            return None
        if self.unknown:
            return []
        return [k for k in self.configured[1:] if not self.in_use.get(k)]


@dataclass
class RotationReport:
    credential_keys: CredentialKeys
    channel_keys: ChannelKeys
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        creds, channels = self.credential_keys, self.channel_keys
        return {
            "dry_run": self.dry_run,
            "credential_keys": {
                "current": creds.current, "configured": creds.configured,
                "sealed_by": dict(sorted(creds.sealed_by.items())),
                ("would_reseal" if self.dry_run else "resealed"): creds.resealed,
                "unopenable": [u.__dict__ for u in creds.unopenable],
                "removable": creds.removable,
            },
            "channel_token_keys": {
                "in_use": dict(sorted(channels.in_use.items())), "unknown": channels.unknown,
                "configured": channels.configured, "removable": channels.removable,
            },
        }


def _credential_docs(db: Any) -> Iterator[Any]:
    yield from db.collection(CREDENTIALS).select([SEALED_FIELD]).stream()


def reseal_one(db: Any, credential_id: str, keyring: Mapping[str, bytes]) -> bool:
    """Re-seal one stored token under the current key, in a transaction.

    Returns True if it was re-sealed, False if already current or gone; raises
    SealError when the configured keys cannot open it. The transaction makes a
    token stored anew meanwhile win over the re-sealed old one.
    """
    from google.cloud import firestore

    current = next(iter(keyring))
    ref = db.collection(CREDENTIALS).document(credential_id)

    @firestore.transactional
    def run(transaction: Any) -> bool:
        snapshot = ref.get(transaction=transaction)
        sealed = (snapshot.to_dict() or {}).get(SEALED_FIELD) if snapshot.exists else None
        if not isinstance(sealed, str) or key_id_of(sealed) == current:
            return False
        plain = unseal(sealed, keyring, credential_id)
        transaction.update(ref, {SEALED_FIELD: seal(plain, keyring, credential_id)})
        return True

    return bool(run(db.transaction()))


def credential_keys(db: Any, keyring: Mapping[str, bytes], *, dry_run: bool) -> CredentialKeys:
    """Count tokens per sealing key; re-seal those under an old key unless `dry_run`."""
    report = CredentialKeys(configured=list(keyring))
    counts: Counter[str] = Counter()
    for snapshot in _credential_docs(db):
        sealed = (snapshot.to_dict() or {}).get(SEALED_FIELD)
        if not isinstance(sealed, str):
            continue
        key_id = key_id_of(sealed) or "malformed"
        if key_id == report.current:
            counts[key_id] += 1
            continue
        try:
            if dry_run:
                unseal(sealed, keyring, snapshot.id)  # would it open?
                report.resealed += 1
                counts[key_id] += 1
                continue
            changed = reseal_one(db, snapshot.id, keyring)
        except SealError as err:
            report.unopenable.append(Unopenable(snapshot.id, key_id, str(err)))
            counts[key_id] += 1
            continue
        report.resealed += int(changed)
        counts[report.current] += 1
    report.sealed_by = dict(counts)
    return report


def channel_keys(db: Any, configured: list[str] | None,
                 now: datetime | None = None) -> ChannelKeys:
    """Delivering, unexpired channels per signing key (the renewer's state+expiration index)."""
    from google.cloud.firestore_v1.base_query import FieldFilter

    now = now or datetime.now(UTC)
    report = ChannelKeys(configured=configured)
    counts: Counter[str] = Counter()
    for state in DELIVERING:
        query = (db.collection(CHANNELS)
                 .where(filter=FieldFilter("state", "==", state))
                 .where(filter=FieldFilter("expiration", ">", now))
                 .select([TOKEN_KEY_FIELD]))
        for snapshot in query.stream():
            key_id = (snapshot.to_dict() or {}).get(TOKEN_KEY_FIELD)
            if isinstance(key_id, str) and key_id:
                counts[key_id] += 1
            else:
                report.unknown += 1
    report.in_use = dict(counts)
    return report


def rotate(db: Any, credential_keyring: Mapping[str, bytes],
           channel_key_ids: list[str] | None, *, dry_run: bool = False) -> RotationReport:
    """Re-seal stored refresh tokens under the current key and report every key's use."""
    return RotationReport(credential_keys(db, credential_keyring, dry_run=dry_run),
                          channel_keys(db, channel_key_ids), dry_run)
