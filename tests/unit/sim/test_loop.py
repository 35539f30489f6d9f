"""The virtual clock, the event loop's ordering, the ordered index and the task queue's
rules (names, schedule times, the dispatch rate, retries with backoff)."""

from __future__ import annotations

import random
from datetime import timedelta

from infra.sim.clock import EventLoop, VirtualClock
from infra.sim.index import SortedIndex
from infra.sim.tasks import QueueConfig, SimTaskQueue


def test_actions_run_in_time_order_and_ties_in_scheduling_order() -> None:
    loop = EventLoop(VirtualClock())
    seen: list[tuple[str, float]] = []

    def note(name: str) -> None:
        seen.append((name, loop.clock.t))

    def chain() -> None:
        note("chain")
        loop.at(loop.clock.t, note, "same instant, scheduled later")
        loop.at(loop.clock.t - 10, note, "in the past: now")

    loop.at(5.0, note, "b")
    loop.at(1.0, note, "a")
    loop.at(5.0, note, "c")
    loop.at(3.0, chain)
    loop.at(9.0, note, "later")
    loop.run(6.0)
    assert seen == [("a", 1.0), ("chain", 3.0), ("same instant, scheduled later", 3.0),
                    ("in the past: now", 3.0), ("b", 5.0), ("c", 5.0)]
    assert loop.clock.t == 6.0 and loop.pending() == 1
    loop.run(10.0)
    assert seen[-1] == ("later", 9.0)


def test_the_clock_reads_virtual_time() -> None:
    clock = VirtualClock()
    clock.t = 90.5
    assert clock.now() == clock.start + timedelta(seconds=90.5)
    assert clock.at(clock.now()) == 90.5
    assert clock.timestamp() == clock.start.timestamp() + 90.5


def test_the_index_answers_as_a_sorted_scan_would() -> None:
    rng = random.Random(3)
    index = SortedIndex()
    truth: dict[str, int | None] = {}
    for step in range(3000):
        doc = f"d{rng.randrange(60):02d}"
        if rng.random() < 0.15:
            index.remove(doc)
            truth.pop(doc, None)
        else:
            value = None if rng.random() < 0.2 else rng.randrange(40)
            index.set(doc, value)
            truth[doc] = value
        if step % 7:
            continue
        upto, limit = rng.randrange(45), rng.randrange(1, 12)
        include_null = rng.random() < 0.5
        nulls = sorted(d for d, v in truth.items() if v is None)
        ordered = sorted((v, d) for d, v in truth.items() if v is not None and v <= upto)
        expected = (nulls if include_null else []) + [d for _, d in ordered]
        after = rng.choice(expected) if expected and rng.random() < 0.5 else None
        if after is not None:
            expected = expected[expected.index(after) + 1:]
        assert index.scan(upto, limit, include_null=include_null, after=after) == \
            expected[:limit]


def _queue(rate: float = 50.0) -> tuple[EventLoop, SimTaskQueue, list[tuple[float, bytes]],
                                        list[int]]:
    loop = EventLoop(VirtualClock())
    served: list[tuple[float, bytes]] = []
    answers: list[int] = []

    def serve(body: bytes) -> int:
        served.append((loop.clock.t, body))
        return answers.pop(0) if answers else 200

    queue = SimTaskQueue(loop, QueueConfig(max_dispatches_per_second=rate, min_backoff=10,
                                           max_backoff=300, max_doublings=3,
                                           max_attempts=5, max_retry_duration=3600),
                         serve, lambda body: 200)
    return loop, queue, served, answers


def test_a_task_name_is_refused_for_an_hour_and_not_before_is_kept() -> None:
    loop, queue, served, _ = _queue()
    later = loop.clock.now() + timedelta(seconds=30)
    queue.enqueue_sync("s1", 1, later, origin="request")
    queue.enqueue_sync("s1", 1, origin="request")  # the same name: AlreadyExists
    queue.enqueue_sync("s1", 2, origin="request")
    loop.run(100)
    assert [t for t, _ in served] == [0.0, 30.0]
    assert served[0][1] == b'{"subscription_id": "s1"}' and queue.deduplicated == 1
    loop.run(3599.0)
    queue.enqueue_sync("s1", 1, origin="request")
    assert queue.deduplicated == 2
    loop.run(3700.0)
    queue.enqueue_sync("s1", 1, origin="request")  # the name is free again after an hour
    loop.run(3800.0)
    assert len(served) == 3


def test_dispatches_keep_to_the_queue_rate() -> None:
    loop, queue, served, _ = _queue(rate=2.0)
    for generation in range(10):
        queue.enqueue_sync("s1", generation)
    loop.run(60)
    times = [t for t, _ in served]
    assert len(times) == 10
    # A burst of two (the bucket), then one every half second.
    assert times[:2] == [0.0, 0.0] and times[-1] == 4.0
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(times[1:], times[2:], strict=False))


def test_a_failed_attempt_is_retried_with_backoff_until_max_attempts() -> None:
    loop, queue, served, answers = _queue()
    answers.extend([500] * 10)
    queue.enqueue_sync("s1", 1)
    loop.run(10_000)
    assert [t for t, _ in served] == [0.0, 10.0, 30.0, 70.0, 150.0]  # 10, 20, 40, 80
    assert queue.abandoned == 1 and queue.retried == 4


def test_backoff_doubles_then_grows_linearly_to_the_maximum() -> None:
    # Cloud Tasks' documented example: min 10 s, max 300 s, 3 doublings.
    config = QueueConfig(min_backoff=10, max_backoff=300, max_doublings=3)
    assert [config.backoff(n) for n in range(1, 9)] == [10, 20, 40, 80, 160, 240, 300, 300]


def test_the_queue_settings_are_terraforms() -> None:
    config = QueueConfig.from_terraform()
    assert config.max_dispatches_per_second > 0 and config.max_attempts >= 1
    assert config.scaled(0.1).max_dispatches_per_second == config.max_dispatches_per_second * 0.1


def test_a_fractional_dispatch_rate_late_in_the_day_does_not_spin() -> None:
    # A sample's queue rate is the deployed one times its share (50/s x 6.42 %): the
    # refill to a whole token must move time on even where a float cannot hold the
    # remaining fraction of a second (it spun at t ~ 80,000 s before).
    loop = EventLoop(VirtualClock())
    served: list[float] = []
    queue = SimTaskQueue(loop, QueueConfig(max_dispatches_per_second=50 * 0.0642),
                         lambda body: served.append(loop.clock.t) or 200, lambda body: 200)
    loop.run(80_000.0)
    for generation in range(200):
        queue.enqueue_sync("s1", generation)
    loop.run(80_100.0, max_actions=10_000)
    assert len(served) == 200
