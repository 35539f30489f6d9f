"""A local stack whose functions run with the test hooks (tests/faults/hooks.py), and
what a liveness test needs around it: the hooks' control file and journal, the
queue as the Cloud Tasks emulator holds it, function restarts, direct dispatches.

The backstops (safety net, sweep, outbox sweep) are settings: a test that must show
convergence through notifications, tasks and renewals sets them far beyond its own
duration (`BACKSTOPS_OFF`).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from infra.local import components
from infra.local.processes import free_port, port_in_use
from infra.local.stack import Stack, StackConfig
from tests.faults import hooks
from tests.faults.proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
STACK_MAIN = ROOT / "tests/faults/stack_main.py"
FAR = "3600"  # far beyond any liveness test's duration
BACKSTOPS_OFF = {
    "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": FAR,
    "CALSYNC_SWEEP_AFTER_SECONDS": FAR,
    "CALSYNC_OUTBOX_SWEEP_SECONDS": FAR,
}
# Channels, leases and claims on a liveness test's scale: a channel lives 20 s and is
# renewed in its last 12, so renewals happen many times during a test.
SMALL_CHANNEL_INTERVALS = {
    "CALSYNC_MIN_SYNC_INTERVAL_SECONDS": "0.5",
    "CALSYNC_CHANNEL_TTL_SECONDS": "20",
    "CALSYNC_RENEWAL_WINDOW_SECONDS": "12",
    "CALSYNC_LEASE_SECONDS": "5",
    "CALSYNC_CHANNEL_CLAIM_SECONDS": "6",
    "CALSYNC_PENDING_CHANNEL_GRACE_SECONDS": "6",
    "CALSYNC_RENEWAL_BACKOFF_SECONDS": "2",
}


@dataclass
class World:
    """The stack, the refusing proxy in front of its Cloud Tasks emulator, the hooks."""

    stack: Stack
    proxy: TcpProxy
    hooks_dir: Path
    tasks_host: str  # the emulator itself, not the proxy: the test reads the queue here
    _control: dict[str, Any] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    @property
    def run_dir(self) -> Path:
        return self.stack.config.run_dir

    # -- the hooks' control file ---------------------------------------------------

    def _write(self) -> None:
        path = self.hooks_dir / hooks.CONTROL
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._control))
        tmp.replace(path)

    def budget(self, fault: str, target: str, count: int = 1, **params: Any) -> str:
        """Allow `fault` `count` times in `target`; its id (journal lines carry it)."""
        with self._lock:
            budget_id = f"{fault}-{next(self._ids)}"
            self._control.setdefault("budgets", {})[budget_id] = {
                "fault": fault, "target": target, "count": count, **params}
            self._write()
        return budget_id

    def drop_budget(self, budget_id: str) -> None:
        with self._lock:
            self._control.get("budgets", {}).pop(budget_id, None)
            self._write()

    def switch(self, name: str, on: bool, **params: Any) -> None:
        with self._lock:
            switches = self._control.setdefault("switches", {})
            if on:
                switches[name] = params
            else:
                switches.pop(name, None)
            self._write()

    def mutate(self, *names: str) -> None:
        """Run the functions as the broken copy named (empty: the real code)."""
        unknown = set(names) - set(hooks.MUTATIONS)
        assert not unknown, f"unknown mutations {unknown}"
        with self._lock:
            self._control["mutations"] = list(names)
            self._write()

    def journal(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        lines = hooks.read_journal(self.hooks_dir)
        return [line for line in lines if (event is None or line["event"] == event)
                and all(line.get(k) == v for k, v in match.items())]

    # -- the queue -----------------------------------------------------------------

    def queued_tasks(self) -> list[tuple[str, str]]:
        """(task name, target URL) of every task the emulator holds (in-flight ones
        are out of its list while they run)."""
        client = components.tasks_client(self.tasks_host)
        path = self.env["CALSYNC_TASKS_QUEUE_PATH"]
        return [(task.name.rsplit("/", 1)[-1], task.http_request.url)
                for task in client.list_tasks(parent=path, timeout=10)]

    # -- processes -------------------------------------------------------------------

    def restart(self, target: str) -> None:
        """SIGKILL a function's whole process group and start it again on its port."""
        stack = self.stack
        name = f"function {target}"
        index, old = next((i, p) for i, p in enumerate(stack.processes) if p.name == name)
        if old.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old.pid, signal.SIGKILL)
        old.stop()
        url = {"sync_worker": "CALSYNC_WORKER_URL", "renew_channels": "CALSYNC_RENEWER_URL",
               "webhook": "CALSYNC_WEBHOOK_URL", "api": "CALSYNC_API_URL"}[target]
        port = int(urlparse(stack.env[url]).port or 0)
        deadline = time.monotonic() + 10
        while port_in_use(port) and time.monotonic() < deadline:
            time.sleep(0.05)
        stack.processes[index] = components.start_function(
            target, port, stack.config.run_dir, stack.env, stack.config.functions_source,
            90, on_start=stack._record)

    def dispatch(self, sub_id: str) -> str:
        """Deliver a sync task's request to the worker directly, as Cloud Tasks does
        when it delivers a task twice (at least once) or runs tasks side by side
        (the emulator runs one at a time); the worker's answer."""
        body = json.dumps({"subscription_id": sub_id}).encode()
        request = urllib.request.Request(self.env["CALSYNC_WORKER_URL"], data=body,
                                         method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.read().decode(errors="replace").strip()
        except urllib.error.HTTPError as err:
            return f"http {err.code}"
        except OSError as err:
            return f"unreachable: {type(err).__name__}"


@contextlib.contextmanager
def hooked_stack(run_dir: Path, project: str, env: dict[str, str],
                 clock_offsets: dict[str, float] | None = None) -> Iterator[World]:
    """A whole local stack with hooked functions and a refusing proxy for Cloud Tasks."""
    hooks_dir = run_dir / "hooks"
    hooks_dir.mkdir(parents=True, exist_ok=True)
    tasks_port = free_port()
    with TcpProxy(tasks_port) as proxy:
        function_env = {
            **env,
            "CLOUD_TASKS_EMULATOR_HOST": proxy.address,
            "PYTHONPATH": str(ROOT),
            hooks.HOOKS_DIR: str(hooks_dir),
            hooks.CLOCK_OFFSETS: json.dumps(clock_offsets or {}),
        }
        config = StackConfig(run_dir=run_dir / "stack", project=project, tasks_port=tasks_port,
                             functions_source=STACK_MAIN, extra_function_env=function_env)
        with Stack(config) as stack:
            world = World(stack, proxy, hooks_dir, f"{components.HOST}:{tasks_port}")
            world._write()
            yield world


def calls(control: Any) -> Counter[str]:
    """The Calendar emulator's call counts per method."""
    return Counter(control.counters().get("calls", {}))


__all__ = ["BACKSTOPS_OFF", "World", "calls", "hooked_stack"]
