"""Sharded renewal (issue 19, item 4): what a renewer task is asked to do, the names
and bodies of the fan-out tasks, each shard's budget, and the one-off backfill that
gives channel records written before sharding their shard.

With CALSYNC_RENEWAL_SHARDS = n > 1, a Cloud Scheduler tick queues one task per
shard for the current slot (`renew-s{k}of{n}-{slot}`); shard k renews the channels
whose stored shard is one of `shard_values(k, n)` (model.py). A shard with more due
after its budget queues its continuation under the NEXT slot's name, which is also
the name the next tick gives it: one run per shard and slot, whoever asks, so a
repeated tick, a retried fan-out or a continuation racing a tick does the work
once (Cloud Tasks refuses a name it has seen; the emulator does not, see DESIGN.md
"Liveness"). Each run starts at most `shard_budget` watches, so the renewer starts
at most about CALSYNC_RENEWALS_PER_MINUTE renewals a minute however many are due.

Channels written before sharding have no `shard` and no shard query finds them: the
tick scans the channels the shards query (pending, active) in expiration order, in
bounded steps, and stores their shard (`ShardBackfill`). It is done only after a
complete pass that started a dispatch deadline after the first one found none (an
instance of the previous version may write channels for that long after a deploy).

This module imports the vocabulary and `scan` only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.config import Settings
from functions.lifecycle.scan import READ_PAST_FACTOR, Pass, Section
from functions.model import ACTIVE, PENDING, SHARD_SPACE

# The states whose queries the shard tasks run (abandoned records are the tick's).
BACKFILL_STATES = (PENDING, ACTIVE)
FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
# The body of the tick's own continuation: its sections again, no second fan-out.
TICK_CONTINUATION: dict[str, Any] = {"fan_out": False}


@dataclass(frozen=True)
class RenewerJob:
    """What one POST to the renewer asks: a tick (Cloud Scheduler, the CLI; `fan_out`
    False for the tick's own continuation) or one shard of n."""

    shard: int | None = None
    shards: int = 0
    fan_out: bool = True


def parse_job(body: bytes) -> RenewerJob:
    """The renewer's request body: empty or `{}` (a tick), `{"fan_out": false}`, or
    `{"shard": k, "shards": n}`. Raises ValueError with a one-line reason."""
    if not body.strip():
        return RenewerJob()
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError("body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    unknown = sorted(set(data) - {"shard", "shards", "fan_out"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    if "shard" in data or "shards" in data:
        shard, shards = data.get("shard"), data.get("shards")
        if "fan_out" in data:
            raise ValueError("fan_out applies to a tick, not to a shard")
        if type(shards) is not int or not 2 <= shards <= SHARD_SPACE:
            raise ValueError(f"shards must be a whole number from 2 to {SHARD_SPACE}")
        if type(shard) is not int or not 0 <= shard < shards:
            raise ValueError("shard must be a whole number from 0 to shards - 1")
        return RenewerJob(shard=shard, shards=shards)
    fan_out = data.get("fan_out", True)
    if type(fan_out) is not bool:
        raise ValueError("fan_out must be true or false")
    return RenewerJob(fan_out=fan_out)


def shard_body(shard: int, shards: int) -> dict[str, Any]:
    return {"shard": shard, "shards": shards}


def slot_of(moment: datetime, settings: Settings) -> int:
    """The slot `moment` falls in: slots are CALSYNC_RENEWAL_SLOT_SECONDS long."""
    return int(moment.timestamp() // settings.renewal_slot)


def slot_start(slot: int, settings: Settings) -> datetime:
    return datetime.fromtimestamp(slot * settings.renewal_slot, UTC)


def shard_task_name(shard: int, shards: int, slot: int) -> str:
    """One name per shard, shard count and slot (letters, digits, hyphens)."""
    return f"renew-s{shard}of{shards}-{slot}"


def shard_budget(settings: Settings, shards: int) -> int:
    """Watches one shard run may start: its share of the renewals allowed per slot."""
    per_slot = settings.renewals_per_minute * settings.renewal_slot // 60
    return max(1, per_slot // shards)


class ShardBackfill:
    """Stores its shard on channel records written before sharding, a bounded step per
    renewer tick (and its continuations while it makes progress)."""

    def __init__(self, run: Pass, grace: timedelta) -> None:
        self._run = run
        self._subs = run.subs
        self._grace = grace

    def step(self) -> tuple[Section, bool]:
        """One bounded step: (what it did, whether the backfill is complete)."""
        now, subs = self._run.now, self._subs
        state = subs.shard_backfill()
        if state.get("done_at") is not None:
            return Section(), True
        first = state.get("first_started_at") or now
        waiting_until = state.get("next_pass_at")
        if waiting_until is not None and waiting_until > now:
            return Section(), False
        if state.get("pass_started_at") is None or waiting_until is not None:
            state = {"first_started_at": first, "pass_started_at": now, "passes":
                     int(state.get("passes") or 0), "state": 0, "after_expiration": None,
                     "after_id": None, "found": 0, "next_pass_at": None, "done_at": None}
        batch = self._run.batch
        read, limit = 0, batch * READ_PAST_FACTOR
        index = int(state.get("state") or 0)
        after_id = state.get("after_id")
        after = (state.get("after_expiration"), after_id) if after_id else None
        found = int(state.get("found") or 0)
        complete = False
        while read < limit:
            rows = subs.due_channels(BACKFILL_STATES[index], FAR_FUTURE, batch, after)
            read += len(rows)
            self._run.report.channel_reads += len(rows)
            legacy = [channel.id for channel, doc in rows if doc.get("shard") is None]
            if legacy:
                self._run.report.backfilled += subs.assign_shards(legacy)
                found += len(legacy)
            if len(rows) == batch:
                after = (rows[-1][1].get("expiration"), rows[-1][0].id)
                continue
            index, after = index + 1, None
            if index < len(BACKFILL_STATES):
                continue
            complete = True
            break
        if complete:
            started = state["pass_started_at"]
            state["passes"] = int(state.get("passes") or 0) + 1
            if found == 0 and started >= first + self._grace:
                state["done_at"] = now
            else:  # found some, or started too early to rule out old writers: again
                state["next_pass_at"] = max(now, first + self._grace)
            index = 0
        state.update(state=index, found=found, after_expiration=after[0] if after else None,
                     after_id=after[1] if after else None)
        subs.save_shard_backfill(state)
        return (Section(work=read, progress=read, more=read >= limit),
                state.get("done_at") is not None)
