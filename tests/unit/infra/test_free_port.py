"""Ports for local components: never one the kernel may hand to an outgoing connection
meanwhile (the ephemeral range), never the same one twice in a process."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from infra.local import processes
from infra.local.processes import _PORT_RANGE, free_port, port_in_use


def _ephemeral_range() -> tuple[int, int]:
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text()
    low, high = text.split()
    return int(low), int(high)


def test_ports_are_below_the_ephemeral_range_and_handed_out_once() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    low, _ = _ephemeral_range()
    assert all(_PORT_RANGE[0] <= port <= _PORT_RANGE[1] < low for port in ports)
    assert not any(port_in_use(port) for port in ports[:20])


def test_a_port_something_listens_on_is_not_handed_out(monkeypatch: Any) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        # The draws offer the busy port first: it is passed over.
        draws = iter([taken, taken, *range(24001, 24500)])
        monkeypatch.setattr(processes.random, "randint", lambda *_: next(draws))
        assert port_in_use(taken)
        assert free_port() in range(24001, 24500)
