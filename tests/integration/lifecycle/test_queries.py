"""Every query the lifecycle store makes maps to an index in the one catalogue that
Terraform reads (the emulator enforces none): recorded on the wire while the
renewer, `status` and `unsubscribe` run over rows due in every section."""

from __future__ import annotations

from typing import Any

import pytest
from google.cloud.firestore_v1.query import Query
from google.cloud.firestore_v1.types import StructuredQuery

from functions.adapters.firestore import catalogue
from functions.errors import CalendarUnavailable
from tests.integration.lifecycle.conftest import Lifecycle

EQUALITY = (StructuredQuery.FieldFilter.Operator.EQUAL, StructuredQuery.FieldFilter.Operator.IN)


def _filters(where: Any) -> list[tuple[str, Any]]:
    if "composite_filter" in where:
        return [pair for inner in where.composite_filter.filters for pair in _filters(inner)]
    if "field_filter" in where:
        return [(where.field_filter.field.field_path, where.field_filter.op)]
    return []


def _index_problem(query: Any) -> str | None:
    """None when `query` (a StructuredQuery) is served by a catalogued index."""
    collection = query.from_[0].collection_id
    filters = _filters(query.where) if "where" in query else []
    equality = list(dict.fromkeys(f for f, op in filters if op in EQUALITY))
    ranged = list(dict.fromkeys(
        [f for f, op in filters if op not in EQUALITY]
        + [o.field.field_path for o in query.order_by if o.field.field_path != "__name__"]))
    fields = equality + [f for f in ranged if f not in equality]
    if not ranged or len(fields) == 1:  # equality only, or one field: single-field indexes
        single = set(catalogue.SINGLE_FIELD_QUERIES)
        missing = [f for f in fields if (collection, f) not in single]
        return f"{collection} on {missing}: not in SINGLE_FIELD_QUERIES" if missing else None
    wanted = [(f, "ASCENDING") for f in fields]
    if any(q["collection"] == collection and q["fields"] == wanted for q in catalogue.QUERIES):
        return None
    return f"{collection} on {wanted}: no composite index in catalogue.QUERIES"


def test_every_lifecycle_query_has_its_index(lifecycle: Lifecycle,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[Any] = []
    stream = Query.stream

    def recording(self: Query, *args: Any, **kwargs: Any) -> Any:
        recorded.append(self._to_protobuf())
        return stream(self, *args, **kwargs)

    monkeypatch.setattr(Query, "stream", recording)
    renewing, _ = lifecycle.subscribe_with_channel("cal-renew")  # due for renewal
    lifecycle.served(renewing)
    retrying = lifecycle.subscribe("cal-retry")  # a pending record due for a retry
    lifecycle.served(retrying)
    lifecycle.calendar.fail_next = [CalendarUnavailable("watch 503")]
    sub = lifecycle.store.get_subscription(retrying)
    assert sub is not None and not lifecycle.service.ensure_channel(sub)
    lifecycle.subscribe("cal-stranded")  # its request is the sweep's
    deleting = lifecycle.subscribe("cal-deleting")
    lifecycle.subs.begin_delete(deleting, lifecycle.clock[0])
    lifecycle.advance(days=6, hours=12)
    report = lifecycle.renewer(batch=1).run()
    assert report.renewed and report.swept and report.safety_net and report.deletions_resumed
    lifecycle.advance(days=2)
    lifecycle.renewer().run()  # abandoned records past their retention
    lifecycle.service.status(renewing)
    lifecycle.service.list_status()
    lifecycle.service.unsubscribe(renewing)
    lifecycle.advance(minutes=1)
    assert len(recorded) > 10
    problems = {p for p in map(_index_problem, recorded) if p is not None}
    assert problems == set()
