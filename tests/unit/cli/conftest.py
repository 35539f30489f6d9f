"""Running the CLI in-process against fakes of the services it calls."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from functions import app
from functions.cli.main import main

QUEUE_ENV = {
    "GOOGLE_CLOUD_PROJECT": "calsync-cli", "CALSYNC_REGION": "local",
    "CALSYNC_TASKS_QUEUE": "q", "CALSYNC_WORKER_URL": "http://127.0.0.1:9/worker",
}
# Every variable the CLI might read; tests start from none of them.
ALL_VARIABLES = (*QUEUE_ENV, "CALSYNC_CHANNEL_TOKEN_KEYS", "CALSYNC_CREDENTIAL_KEYS",
                 "CALSYNC_WEBHOOK_URL", "CALSYNC_TASKS_INVOKER_SA", "CLOUD_TASKS_EMULATOR_HOST",
                 "CALSYNC_OAUTH_CLIENT_ID", "CALSYNC_OAUTH_CLIENT_SECRET",
                 "CALSYNC_DELEGATION_SA", "CALSYNC_DELEGATION_KEY_FILE",
                 "CALENDAR_API_ENDPOINT", "CALSYNC_OAUTH_TOKEN_URI")


@dataclass
class Run:
    status: int
    out: str
    err: str

    def json(self) -> Any:
        lines = self.out.splitlines()
        assert len(lines) == 1, self.out  # exactly one JSON object on stdout
        return json.loads(lines[0])


class TtyStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, err: io.StringIO | None = None) -> Run:
    out, err = io.StringIO(), err if err is not None else io.StringIO()
    status = main(list(argv), out=out, err=err)
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return Run(status, out.getvalue(), err.getvalue())


@dataclass
class Fakes:
    service: Any = None
    store: Any = None
    settings_seen: list[Any] = field(default_factory=list)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fakes]:
    """The CLI's composition root replaced by fakes; the queue variables set."""
    for name in ALL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in QUEUE_ENV.items():
        monkeypatch.setenv(name, value)
    found = Fakes()

    def service(settings: Any) -> Any:
        found.settings_seen.append(settings)
        return found.service

    def store(settings: Any) -> Any:
        found.settings_seen.append(settings)
        return found.store

    monkeypatch.setattr(app, "subscription_service", service)
    monkeypatch.setattr(app, "subscription_reader", service)  # status and list read through it
    monkeypatch.setattr(app, "store", store)
    monkeypatch.setattr(app, "feed", store)  # `changes` reads the feed the API reads
    yield found
