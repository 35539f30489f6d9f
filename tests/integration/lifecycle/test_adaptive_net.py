"""The adaptive safety net on the Firestore emulator (issue 19 item 3): the renewer's
query on `safety_net_at`, its moves and its probe marks, through the real
`SubscriptionStore`. A probe that finds nothing widens the interval (up to
CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS), one that finds a change no notification
announced brings it back to CALSYNC_SAFETY_NET_INTERVAL_SECONDS."""

from __future__ import annotations

from tests.integration.lifecycle.conftest import Lifecycle

HOUR = 3600


def _probes(lifecycle: Lifecycle) -> int:
    return sum(1 for _, _, origin in lifecycle.queue.tasks if origin == "safety")


def test_the_interval_widens_on_clean_probes_and_drops_on_a_missed_change(
        lifecycle: Lifecycle) -> None:
    lifecycle.configure(CALSYNC_SAFETY_NET_MAX_INTERVAL_SECONDS=str(4 * HOUR))
    sub_id, _ = lifecycle.subscribe_with_channel("cal-net@example.com")
    lifecycle.served(sub_id)
    renewer = lifecycle.renewer()

    lifecycle.advance(seconds=HOUR + 1)
    assert renewer.run().safety_net == 1  # a shortest interval without a sync: probed
    doc = lifecycle.doc(sub_id)
    assert doc["probe_at"] == lifecycle.clock[0] and doc["probe_seq"] == 0
    lifecycle.served(sub_id)  # the probe's run: nothing new in the feed

    lifecycle.advance(seconds=HOUR + 1)
    report = renewer.run()
    assert report.safety_net == 0 and report.net_found == 0
    doc = lifecycle.doc(sub_id)
    assert doc["net_interval"] == 2 * HOUR and doc.get("probe_at") is None
    lifecycle.advance(seconds=HOUR - 60)
    assert renewer.run().safety_net == 0  # not due: 2 h after the probe's run
    lifecycle.advance(seconds=120)
    assert renewer.run().safety_net == 1
    assert _probes(lifecycle) == 2

    # The next probe's run finds a change no notification announced.
    lifecycle.writer(sub_id, change_seq=1)
    lifecycle.served(sub_id)
    lifecycle.advance(seconds=HOUR + 1)
    report = renewer.run()
    # Back to the shortest interval, which has passed since that run: probed again.
    assert report.net_found == 1 and report.safety_net == 1
    assert lifecycle.doc(sub_id)["net_interval"] == HOUR
    assert _probes(lifecycle) == 3


def test_without_a_longest_interval_the_net_keeps_its_fixed_interval(
        lifecycle: Lifecycle) -> None:
    sub_id, _ = lifecycle.subscribe_with_channel("cal-fixed@example.com")
    lifecycle.served(sub_id)
    renewer = lifecycle.renewer()
    for probe in range(1, 4):
        lifecycle.advance(seconds=HOUR + 1)
        assert renewer.run().safety_net == 1
        lifecycle.served(sub_id)
        assert _probes(lifecycle) == probe
    doc = lifecycle.doc(sub_id)
    assert "net_interval" not in doc and "probe_at" not in doc  # nothing new is written
