"""The functions-framework test client of `main.api`, over in-memory ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest

from functions import entrypoints as api
from tests.unit.api.fakes import World, fake_api

ROOT = Path(__file__).resolve().parents[3]


def make_client(world: World) -> Any:
    """The real functions-framework app of `main.api`, its ports faked."""
    app = functions_framework.create_app(target="api", source=str(ROOT / "main.py"))
    api._api = fake_api(world)
    return app.test_client()


@pytest.fixture
def world() -> World:
    return World()


@pytest.fixture
def client(world: World) -> Iterator[Any]:
    saved = api._api
    try:
        yield make_client(world)
    finally:
        api._api = saved
