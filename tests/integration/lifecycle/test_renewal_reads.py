"""What one channel renewal reads, counted on the wire (issue 19, item 4: at most
4 reads per expiring channel, flat from 10^4 to 10^6 channels).

A renewal must read the due row (the query), its subscription, and the old
channel once after the watch (the claim re-check, whose version then conditions
the old channel's state change). The claim is written conditioned on the row as
the query returned it, the new channel is activated conditioned on its own save:
neither reads again unless someone wrote the document meanwhile.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from google.cloud import firestore

from functions.adapters.firestore.store import FirestoreStore
from functions.adapters.firestore.subscriptions import SubscriptionStore
from functions.lifecycle.renewer import Renewer
from functions.lifecycle.subscriptions import SubscriptionService
from tests.integration.lifecycle.conftest import Lifecycle

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from _world import IoCount, count_io  # noqa: E402

READS_PER_RENEWAL = 3
DUE = 6


def _counted(lifecycle: Lifecycle) -> tuple[Renewer, IoCount, Any]:
    """The renewer over its own Firestore client, whose traffic alone is counted."""
    client = firestore.Client(project=lifecycle.db.project)
    count = count_io(client)
    subs = SubscriptionStore(client)
    service = SubscriptionService(lifecycle.settings, subs, lifecycle.calendar,
                                  FirestoreStore(client), lifecycle.queue,
                                  clock=lambda: lifecycle.clock[0])
    renewer = Renewer(lifecycle.settings, subs, service, clock=lambda: lifecycle.clock[0])
    return renewer, count, client


def test_a_renewal_reads_the_row_its_subscription_and_the_old_channel_once(
    lifecycle: Lifecycle,
) -> None:
    lifecycle.configure(CALSYNC_SAFETY_NET_INTERVAL_SECONDS=str(30 * 86400))  # out of the way
    for n in range(DUE):
        lifecycle.served(lifecycle.subscribe_with_channel(f"cal-{n}")[0])
    renewer, count, client = _counted(lifecycle)
    try:
        renewer.run()  # nothing due yet: what a run reads anyway (its empty queries)
        idle = count.reads
        lifecycle.advance(days=6, hours=12)
        count.reset()
        report = renewer.run()
    finally:
        client.close()
    assert report.renewed == DUE and report.failed == 0
    # The renewal query's page replaces the one read its empty answer cost.
    per_renewal = (count.reads - idle + 1) / DUE
    assert per_renewal <= READS_PER_RENEWAL, (count.reads, idle, dict(count.calls))
