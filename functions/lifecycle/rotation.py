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
they use any key). Only channels whose notifications are still accepted count.
The stored side is a `ports.KeyUsage` (Firestore: `adapters.firestore.keys`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from functions.errors import SealError
from functions.model import ACCEPTING_STATES
from functions.ports import KeyUsage


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


def credential_keys(keys: KeyUsage, configured: list[str], *,
                    dry_run: bool) -> CredentialKeys:
    """Count tokens per sealing key; re-seal those under an old key unless `dry_run`."""
    report = CredentialKeys(configured=list(configured))
    counts: Counter[str] = Counter()
    for credential_id, key_id in keys.sealed_key_ids():
        if key_id == report.current:
            counts[key_id] += 1
            continue
        try:
            if dry_run:
                keys.check_opens(credential_id)  # would it open?
                report.resealed += 1
                counts[key_id] += 1
                continue
            changed = keys.reseal(credential_id)
        except SealError as err:
            report.unopenable.append(Unopenable(credential_id, key_id, str(err)))
            counts[key_id] += 1
            continue
        report.resealed += int(changed)
        counts[report.current] += 1
    report.sealed_by = dict(counts)
    return report


def channel_keys(keys: KeyUsage, configured: list[str] | None,
                 now: datetime | None = None) -> ChannelKeys:
    """Channels whose notifications are accepted, unexpired, per signing key."""
    now = now or datetime.now(UTC)
    report = ChannelKeys(configured=configured)
    counts: Counter[str] = Counter()
    for key_id in keys.channel_key_ids(ACCEPTING_STATES, now):
        if key_id:
            counts[key_id] += 1
        else:
            report.unknown += 1
    report.in_use = dict(counts)
    return report


def rotate(keys: KeyUsage, credential_key_ids: list[str],
           channel_key_ids: list[str] | None, *, dry_run: bool = False) -> RotationReport:
    """Re-seal stored refresh tokens under the current key and report every key's use."""
    return RotationReport(credential_keys(keys, credential_key_ids, dry_run=dry_run),
                          channel_keys(keys, channel_key_ids), dry_run)
