"""Fixtures for the sync engine's integration tests (real Firestore emulator)."""

from __future__ import annotations

from typing import Any

import pytest

from functions.adapters.firestore.store import FirestoreStore
from functions.model import Subscription


@pytest.fixture
def store(firestore_db: Any) -> FirestoreStore:
    return FirestoreStore(firestore_db)


@pytest.fixture
def subscription(store: FirestoreStore) -> Subscription:
    sub = Subscription(id="sub-1", calendar_id="primary", owner="alice")
    store.save_subscription(sub)
    return sub
