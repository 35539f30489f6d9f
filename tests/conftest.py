"""Shared fixtures: the real emulators, started once per session, isolated per test.

- `firestore_emulator` / `firestore_db`: the gcloud Firestore emulator; every
  test starts from an empty database (the emulator's documents DELETE endpoint).
- `tasks_emulator` / `tasks_queue`: the Cloud Tasks emulator; a fresh queue per
  test, because this emulator never dispatches a queue re-created under an old
  name, and purging a queue with tasks pending stops its dispatcher.
- `calendar_emulator` / `calendar`: the project's Calendar API emulator, reset
  per test.
- `local_stack`: the whole stack (`infra.local.Stack`) for e2e tests.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from infra.local import components
from infra.local.processes import free_port
from infra.local.stack import Stack, StackConfig, queue_max_attempts

TEST_PROJECT = "calsync-test"
TEST_REGION = "local"


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulators")


@pytest.fixture(scope="session")
def firestore_emulator(run_dir: Path) -> Iterator[str]:
    port = free_port()
    process = components.start_firestore(port, run_dir, timeout=90)
    host = f"{components.HOST}:{port}"
    saved = {k: os.environ.get(k) for k in ("FIRESTORE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ["FIRESTORE_EMULATOR_HOST"] = host
    os.environ["GOOGLE_CLOUD_PROJECT"] = TEST_PROJECT
    try:
        yield host
    finally:
        process.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def firestore_db(firestore_emulator: str) -> Iterator[Any]:
    from google.cloud import firestore

    components.reset_firestore(firestore_emulator, TEST_PROJECT)
    client = firestore.Client(project=TEST_PROJECT)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def tasks_emulator(run_dir: Path) -> Iterator[str]:
    port = free_port()
    process = components.start_tasks_emulator(port, run_dir, queue_max_attempts(), timeout=60)
    try:
        yield f"{components.HOST}:{port}"
    finally:
        process.stop()


@pytest.fixture
def tasks_queue(tasks_emulator: str) -> str:
    """A queue path no earlier test has used."""
    path = (f"projects/{TEST_PROJECT}/locations/{TEST_REGION}/queues/"
            f"t-{uuid.uuid4().hex[:12]}")
    components.create_queue(tasks_emulator, path)
    return path


@pytest.fixture(scope="session")
def calendar_emulator() -> Iterator[Any]:
    from infra.calendar_emulator.testing import running_emulator

    with running_emulator() as emulator:
        yield emulator


@pytest.fixture
def calendar(calendar_emulator: Any) -> Any:
    """The emulator with all calendars, channels and injected faults cleared."""
    calendar_emulator.control.reset()
    return calendar_emulator


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Short sweep and safety-net ages, so e2e tests see them act within seconds.
    config = StackConfig(run_dir=tmp_path_factory.mktemp("stack"), project=TEST_PROJECT,
                         extra_function_env={"CALSYNC_SWEEP_AFTER_SECONDS": "2",
                                             "CALSYNC_SAFETY_NET_INTERVAL_SECONDS": "3"})
    with Stack(config) as stack:
        yield stack


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """Serve a WSGI app on a free loopback port; its base URL. Stopped after the test."""
    servers: list[Any] = []

    def start(app: Any) -> str:
        server = make_server("127.0.0.1", 0, app, handler_class=_QuietHandler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
