"""Watch channels in Firestore: `channels/{channel_id}`, the webhook's lookup index.

A channel is saved `pending` before `events.watch` is called, because the
`sync` message can arrive before the watch call returns; its resource id is
then learnt from whichever comes first, and must match ever after.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore

from functions.adapters.firestore.store import _translated
from functions.errors import ResourceMismatch, StoreError, StoreUnavailable
from functions.model import EVENTS_KIND, PENDING, Channel, channel_shard
from functions.ports import ChannelStore

CHANNELS = "channels"
# Conditional writes re-read and retry this often before giving up (503).
CONDITIONAL_ATTEMPTS = 10
SUBSCRIPTIONS = "subscriptions"
ACCOUNTS = "accounts"

def _channel(channel_id: str, data: dict[str, Any],
             version: datetime | None = None) -> Channel:
    return Channel(
        id=channel_id,
        sub_id=str(data.get("sub_id") or ""),
        state=str(data.get("state") or PENDING),
        resource_id=data.get("resource_id"),
        expiration=data.get("expiration"),
        last_notification_at=data.get("last_notification_at"),
        last_message_number=int(data.get("last_message_number") or 0),
        version=version,
        kind=str(data.get("kind") or EVENTS_KIND),  # records from before kinds watch events
        account_id=data.get("account_id") or None,
    )


class FirestoreChannelStore(ChannelStore):
    def __init__(self, client: firestore.Client) -> None:
        self._client = client

    def _ref(self, channel_id: str) -> Any:
        return self._client.collection(CHANNELS).document(channel_id)

    def save_channel(self, channel: Channel, now: datetime) -> None:
        with _translated():
            self._ref(channel.id).set({
                "sub_id": channel.sub_id, "state": channel.state,
                "resource_id": channel.resource_id, "expiration": channel.expiration,
                "created_at": now, "last_notification_at": None,
                "last_message_number": 0, "renewal_attempts": 0,
                # The renewer's fan-out finds a channel by its shard (catalogue.py).
                "shard": channel_shard(channel.id),
            })

    def get_channel(self, channel_id: str) -> Channel | None:
        with _translated():
            snapshot = self._ref(channel_id).get()
        if not snapshot.exists:
            return None
        return _channel(channel_id, snapshot.to_dict() or {}, snapshot.update_time)

    def learn_resource_id(self, channel_id: str, resource_id: str) -> None:
        """Record the resource id of a pending channel, once; raises ResourceMismatch.

        A read, then a write conditioned on the document's update time (re-read
        if someone wrote meanwhile), not an interactive transaction: the sync
        message arrives while the watch is in flight, and two transactions
        holding read locks on one channel (this and `activate_channel`) can
        deadlock until a lock timeout.
        """
        ref = self._ref(channel_id)
        for _ in range(CONDITIONAL_ATTEMPTS):
            with _translated():
                snapshot = ref.get()
            if not snapshot.exists:
                return  # deleted meanwhile: nothing to learn
            known = (snapshot.to_dict() or {}).get("resource_id")
            if known is not None:
                if known != resource_id:
                    raise ResourceMismatch(channel_id)
                return
            try:
                with _translated():
                    ref.update({"resource_id": resource_id}, option=self._client.write_option(
                        last_update_time=snapshot.update_time))
                return
            except StoreError as err:
                if not isinstance(err.__cause__, gexc.FailedPrecondition | gexc.Aborted):
                    raise
        raise StoreUnavailable(f"channel {channel_id} too contended to record its resource id")

    def record_notification(
        self, channel: Channel, message_number: int, now: datetime
    ) -> datetime | None:
        fields = {"last_notification_at": now, "last_message_number": message_number}
        batch = self._client.batch()
        # One atomic batch: the subscription's copy is written only with the
        # channel's, so both follow the channel's once-per-interval rule.
        option = (self._client.write_option(last_update_time=channel.version)
                  if channel.version is not None else None)
        batch.update(self._ref(channel.id), fields, option=option)
        if channel.sub_id:
            sub = self._client.collection(SUBSCRIPTIONS).document(channel.sub_id)
            batch.update(sub, fields)  # update, never set: must not resurrect a deleted one
        elif channel.account_id:  # a calendar-list channel: its account's copy
            batch.update(self._client.collection(ACCOUNTS).document(channel.account_id), fields)
        with _translated():
            try:
                results = batch.commit()
            except (gexc.FailedPrecondition, gexc.NotFound):
                return None  # written by someone else since our read, or deleted
        return results[0].update_time if results else None
