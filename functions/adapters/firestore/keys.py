"""Which keys stored secrets use, in Firestore (`ports.KeyUsage`): sealed refresh
tokens in `credentials/{id}`, and the key that signed each channel's token
(`channels/{id}.token_key_id`, read through the renewer's state+expiration index)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.adapters.firestore.catalogue import CHANNELS, CREDENTIALS
from functions.adapters.google.sealing import key_id_of, seal, unseal
from functions.ports import KeyUsage

SEALED_FIELD = "sealed_refresh_token"
TOKEN_KEY_FIELD = "token_key_id"


class FirestoreKeyUsage(KeyUsage):
    def __init__(self, db: Any, keyring: Mapping[str, bytes]) -> None:
        self._db = db
        self._keyring = keyring

    def _sealed(self, credential_id: str) -> str | None:
        snapshot = self._db.collection(CREDENTIALS).document(credential_id).get()
        sealed = (snapshot.to_dict() or {}).get(SEALED_FIELD) if snapshot.exists else None
        return sealed if isinstance(sealed, str) else None

    def sealed_key_ids(self) -> Iterator[tuple[str, str]]:
        for snapshot in self._db.collection(CREDENTIALS).select([SEALED_FIELD]).stream():
            sealed = (snapshot.to_dict() or {}).get(SEALED_FIELD)
            if isinstance(sealed, str):
                yield snapshot.id, key_id_of(sealed) or "malformed"

    def check_opens(self, credential_id: str) -> None:
        sealed = self._sealed(credential_id)
        if sealed is not None:
            unseal(sealed, self._keyring, credential_id)

    def reseal(self, credential_id: str) -> bool:
        """Re-seal one stored token under the current key, in a transaction.

        Returns True if it was re-sealed, False if already current or gone; raises
        SealError when the configured keys cannot open it. The transaction makes a
        token stored anew meanwhile win over the re-sealed old one.
        """
        keyring = self._keyring
        current = next(iter(keyring))
        ref = self._db.collection(CREDENTIALS).document(credential_id)

        @firestore.transactional
        def run(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            sealed = (snapshot.to_dict() or {}).get(SEALED_FIELD) if snapshot.exists else None
            if not isinstance(sealed, str) or key_id_of(sealed) == current:
                return False
            plain = unseal(sealed, keyring, credential_id)
            transaction.update(ref, {SEALED_FIELD: seal(plain, keyring, credential_id)})
            return True

        return bool(run(self._db.transaction()))

    def channel_key_ids(self, states: Iterable[str], now: datetime) -> Iterator[str | None]:
        for state in states:
            query = (self._db.collection(CHANNELS)
                     .where(filter=FieldFilter("state", "==", state))
                     .where(filter=FieldFilter("expiration", ">", now))
                     .select([TOKEN_KEY_FIELD]))
            for snapshot in query.stream():
                key_id = (snapshot.to_dict() or {}).get(TOKEN_KEY_FIELD)
                yield key_id if isinstance(key_id, str) and key_id else None
