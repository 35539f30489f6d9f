"""Every query the account code makes maps to an index in the one catalogue Terraform
reads (the emulator enforces none): recorded on the wire while an account is
connected, listed in full and incrementally, renewed, swept, purged, read and
deleted."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from google.cloud.firestore_v1.aggregation import AggregationQuery
from google.cloud.firestore_v1.query import Query

from tests.integration.accounts.conftest import ANN, BOB, World
from tests.integration.lifecycle.test_queries import _index_problem


def test_every_account_query_has_its_index(world: World,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[Any] = []
    stream, count = Query.stream, AggregationQuery.get

    def recording(self: Query, *args: Any, **kwargs: Any) -> Any:
        recorded.append(self._to_protobuf())
        return stream(self, *args, **kwargs)

    def counting(self: AggregationQuery, *args: Any, **kwargs: Any) -> Any:
        recorded.append(self._nested_query._to_protobuf())
        return count(self, *args, **kwargs)

    monkeypatch.setattr(Query, "stream", recording)
    monkeypatch.setattr(AggregationQuery, "get", counting)
    control = world.control
    control.add_user(ANN)
    team = control.create_calendar(BOB, summary="Team")["id"]
    control.share_calendar(team, ANN, "reader")
    own = world.grant(ANN)
    world.service.subscribe("primary", ANN, own)  # adopted: its credential is checked
    account_id = world.account_service.connect(ANN, world.grant(ANN)).account.id
    world.drain()
    control.unshare_calendar(team, ANN)
    world.drain()
    world.account_service.status(account_id)
    world.account_service.list_status()
    world.account_service.connect(ANN, world.grant(ANN))  # reauthorized: members updated
    world.drain()
    world.clock[0] += timedelta(days=40)
    world.renewer().run()  # list channel renewal, account sweep and safety net, the purge
    world.account_service.delete(account_id)
    world.drain()  # the deletion task's queries too
    assert len(recorded) > 10
    problems = {p for p in map(_index_problem, recorded) if p is not None}
    assert problems == set()
