"""Log metrics count lines the code writes (field and value together), our own
faults alert, noisy lines do not page, and the alerts the operators need exist.

The code side is read with `ast` (`infra/tfcheck/log_lines.py`), the filters
with the Logging query language's own precedence (`log_filter.py`). Each rule
is checked on terraform/ and proven to fail on a broken copy (of terraform/,
or of functions/ for the rules about what the code logs).
"""

from __future__ import annotations

import ast
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.tfcheck import consistency, hcl, log_filter, log_lines, monitoring_check

from .conftest import ROOT

Edit = tuple[str, str, str]
TRANSIENT = 'jsonPayload.message=\\"sync run\\" AND jsonPayload.outcome=\\"transient\\"'
MISCONFIGURED_RUN = (' OR (jsonPayload.message=(\\"sync run\\" OR \\"list run\\") AND '
                     'jsonPayload.outcome=\\"misconfigured\\")')
ERROR_ALERT = ('display_name = "calsync: subscriptions going to error"\n'
               '      severity     = "WARNING"')
SYNC_RUNS_DENOMINATOR = ('denominator  = "metric.type=\\"logging.googleapis.com/user/'
                         '${google_logging_metric.this["sync_runs"].name}\\"')

BREAKAGES: dict[str, tuple[list[Edit], str]] = {
    # pairs: the value must be logged in that field of lines with that message
    "outcome logged only under another message": (
        [("monitoring.tf", TRANSIENT,
          'jsonPayload.message=\\"sync run\\" AND jsonPayload.outcome=\\"crashed\\"')],
        "counts 'crashed', which functions/ never logs in jsonPayload.outcome of 'sync run' "
        "lines"),
    "field the message's lines never carry": (
        [("monitoring.tf", 'jsonPayload.message=\\"renewer store failure\\"',
          'jsonPayload.message=\\"renewer store failure\\" AND jsonPayload.outcome=\\"done\\"')],
        "counts 'outcome', which functions/ never logs in 'renewer store failure' lines"),
    "one dead value in a list": (
        [("monitoring.tf", '\\"list run crashed\\" OR \\"unhandled exception\\"',
          '\\"list run crashed\\" OR \\"unhandled exceptions\\"')],
        "counts 'unhandled exceptions', which functions/ never logs as a message"),
    "severity the line never has": (
        [("monitoring.tf", 'jsonPayload.message=\\"renewer store failure\\"',
          'jsonPayload.message=\\"renewer store failure\\" AND severity=ERROR')],
        "counts 'severity=ERROR', which functions/ never logs in 'renewer store failure' "
        "lines"),
    # our own faults alert
    "worker's misconfigured outcome not counted": (
        [("monitoring.tf", MISCONFIGURED_RUN, "")],
        "'sync run' severity=ERROR outcome='misconfigured' (functions/sync/worker.py:"),
    "a misconfigured line not counted": (
        [("monitoring.tf", ' OR \\"api misconfigured\\"', "")],
        "'api misconfigured' severity=ERROR (functions/entrypoints.py:"),
    "renewer store failure not counted": (
        [("monitoring.tf", 'jsonPayload.message=\\"renewer store failure\\"',
          'jsonPayload.message=\\"renewer run\\"')],
        "'renewer store failure' severity=WARNING (functions/entrypoints.py:"),
    "unhandled exceptions not counted": (
        [("monitoring.tf", ' OR \\"unhandled exception\\"', "")],
        "'unhandled exception' severity=ERROR (functions/entrypoints.py:"),
    # noise
    "every renewal attempt counted": (
        [("monitoring.tf", ' AND severity>=ERROR"', '"')],
        "counts 'channel renewal failed' at WARNING"),
    "user-caused errors page": (
        [("monitoring.tf", ERROR_ALERT, ERROR_ALERT.replace('"WARNING"', '"ERROR"'))],
        """this["subscriptions_in_error"] alerts at ERROR on 'sync run' with outcome='failed'"""),
    "transient failures on an absolute count": (
        [("monitoring.tf", SYNC_RUNS_DENOMINATOR + ' AND ${local.run_resource}"',
          'denominator  = ""'),
         ("monitoring.tf", "duration     = local.thresholds.sync_transient_sustained_seconds",
          "duration     = 0")],
        """this["sync_transient"] alerts on a count of 'sync run' with outcome='transient'"""),
    # coverage
    "no absence alert on the renewer": (
        [("monitoring.tf", "    condition_absent {", "    condition_threshold {")],
        "no absence alert (condition_absent) on 'renewer run' lines"),
    "outbox age not extracted": (
        [("monitoring.tf", 'value_field = "jsonPayload.oldest_outbox_age_s"', 'value_field = ""')],
        "no alert on a distribution metric of jsonPayload.oldest_outbox_age_s"),
    "queue depth under a metric type that does not exist": (
        [("monitoring.tf", "cloudtasks.googleapis.com/queue/depth",
          "cloudtasks.googleapis.com/queue/task_count")],
        "no alert on cloudtasks.googleapis.com/queue/depth"),
    "dead letters on the wrong resource": (
        [("monitoring.tf", 'consumer_subscriptions = "resource.type=\\"pubsub_subscription\\"',
          'consumer_subscriptions = "resource.type=\\"pubsub_topic\\"')],
        'dead_letter_message_count is written against resource.type="pubsub_subscription"'),
    "label the metric does not have": (
        [("monitoring.tf", 'metric.labels.response_code=\\"429\\"',
          'metric.labels.status=\\"429\\"')],
        "run.googleapis.com/request_count has no metric label 'status'"),
    "webhook 429 not alerted": (
        [("monitoring.tf", 'metric.labels.response_code=\\"429\\"',
          'metric.labels.response_code=\\"503\\"')],
        "no alert on the webhook's 429 answers"),
    "webhook 403 not alerted": (
        [("monitoring.tf", 'metric.labels.response_code=\\"403\\"',
          'metric.labels.response_code=\\"404\\"')],
        "no alert on the webhook's 403 answers"),
    # wiring
    "alert severity Cloud Monitoring does not know": (
        [("monitoring.tf", '  severity              = "ERROR"',
          '  severity              = "PAGE"')],
        """absent["renewer_runs"]: severity 'PAGE' is not CRITICAL, ERROR or WARNING"""),
    "ratio's denominator metric unwatched": (
        [("monitoring.tf", 'this["sync_runs"].name}', 'this["sync_transient"].name}')],
        'google_logging_metric.this["sync_runs"] has no alert policy'),
}

CODE_BREAKAGES: dict[str, tuple[list[Edit], str]] = {
    "user-caused failure logged at ERROR": (
        [("sync/worker.py", '    Outcome.FAILED: "WARNING",', '    Outcome.FAILED: "ERROR",')],
        "'sync run' with outcome='failed' is logged at ERROR"),
    "a new ERROR line nobody counts": (
        [("lifecycle/renewer.py", '        logs.log("INFO", "renewer run"',
          '        logs.log("ERROR", "renewer lost its way")\n'
          '        logs.log("INFO", "renewer run"')],
        "'renewer lost its way' severity=ERROR (functions/lifecycle/renewer.py:"),
    "an outcome the worker stops writing": (
        [("sync/engine.py", '    TRANSIENT = "transient"', '    TRANSIENT = "retry"')],
        "counts 'transient', which functions/ never logs in jsonPayload.outcome of 'sync run'"),
}


def _ahead(found: list[str]) -> list[str]:
    return [p for p in found if "does not log yet" in p]


def test_real_metrics_and_alerts_follow_the_rules(real_config: hcl.Config) -> None:
    found = monitoring_check.check(real_config, ROOT)
    assert [p for p in found if p not in _ahead(found)] == []
    logged = monitoring_check.logged_names(ROOT)
    assert {name for name in monitoring_check.AHEAD_OF_CODE if name not in logged} == {
        p.split("'")[1] for p in _ahead(found)}


def test_what_is_ahead_of_the_code_does_not_fail_the_pipeline(
        real_config: hcl.Config, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m infra.tfcheck` (Cloud Build) prints AHEAD_OF_CODE as pending and
    passes; anything else fails it."""
    found = consistency.check(real_config, ROOT)
    assert all(consistency.is_pending(p) for p in found), found
    monkeypatch.setitem(monitoring_check.AHEAD_OF_CODE, "oldest_backlog_age_s", "coming")
    broken = monitoring_check._unlogged("oldest_outbox_age", "in 'renewer run' lines")
    assert not consistency.is_pending(broken)
    assert consistency.is_pending(monitoring_check._unlogged("oldest_backlog_age_s", ""))


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_monitoring_check_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config]
) -> None:
    edits, expected = BREAKAGES[name]
    found = monitoring_check.check(load_broken(*edits), ROOT)
    assert any(expected in problem for problem in found), found


@pytest.mark.parametrize("name", sorted(CODE_BREAKAGES))
def test_monitoring_check_fails_when_the_code_changes(
    name: str, real_config: hcl.Config, broken_code: Callable[..., Path]
) -> None:
    edits, expected = CODE_BREAKAGES[name]
    found = monitoring_check.check(real_config, broken_code(*edits))
    assert any(expected in problem for problem in found), found


def test_ahead_of_code_field_passes_once_the_renewer_logs_it(
    real_config: hcl.Config, broken_code: Callable[..., Path]
) -> None:
    """The field the delivery branch adds: named in AHEAD_OF_CODE until the
    renewer run line carries it, then an ordinary field."""
    root = broken_code(("lifecycle/renewer.py", "error_count=len(report.errors))",
                        "error_count=len(report.errors), oldest_outbox_age_s=None)"))
    assert _ahead(monitoring_check.check(real_config, root)) == []


def test_the_worker_line_is_read_with_its_outcomes_and_severities() -> None:
    from functions.sync.engine import Outcome
    from functions.sync.worker import _SEVERITY

    lines = [line for line in log_lines.read(ROOT) if line.message == "sync run"]
    assert len(lines) == 1 and lines[0].path == "functions/sync/worker.py"
    shapes = {(next(iter(e.fields["outcome"] or {None})), e.severity)
              for e in lines[0].entries()}
    assert shapes == {(outcome.value, severity) for outcome, severity in _SEVERITY.items()}
    assert {o.value for o in Outcome} == {outcome for outcome, _ in shapes}


def test_a_conditional_severity_gives_both() -> None:
    renewal = next(line for line in log_lines.read(ROOT)
                   if line.message == "channel renewal failed")
    assert renewal.severity == {"WARNING", "ERROR"}
    assert renewal.fields["outcome"] == {"renewal_failed"}


def test_a_module_is_read_once_per_text_and_again_when_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The code-breakage proofs read copies of functions/ differing in one module:
    # the unchanged modules must not be parsed again, the changed one must be.
    marker = f"# {uuid.uuid4()}"  # text no earlier test read
    parsed: list[str] = []
    real_parse = ast.parse

    def counting_parse(source: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(source, str) and marker in source:
            parsed.append(source)
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting_parse)

    def tree(name: str, b_message: str) -> Path:
        root = tmp_path / name
        (root / "functions").mkdir(parents=True)
        for module, message in (("a", "line a"), ("b", b_message)):
            (root / "functions" / f"{module}.py").write_text(
                f'{marker}\nfrom functions import logs\n\nlogs.log("INFO", "{message}")\n')
        return root

    first = tree("first", "line b")
    assert [line.message for line in log_lines.read(first)] == ["line a", "line b"]
    assert len(parsed) == 2
    second = tree("second", "line b changed")
    assert [line.message for line in log_lines.read(second)] == ["line a", "line b changed"]
    assert len(parsed) == 3 and "line b changed" in parsed[-1]
    assert [line.message for line in log_lines.read(first)] == ["line a", "line b"]
    assert len(parsed) == 3


def _entry(message: str, severity: str = "INFO", **fields: str) -> log_lines.Entry:
    line = log_lines.LogLine("x.py", 1, message, frozenset({severity}),
                             {k: frozenset({v}) for k, v in fields.items()})
    return line.entries()[0]


@pytest.mark.parametrize(("text", "message", "fields", "expected"), [
    # OR binds tighter than AND in the Logging query language
    ('jsonPayload.message="a" OR jsonPayload.message="b" AND jsonPayload.outcome="x"',
     "a", {}, False),
    ('jsonPayload.message="a" OR jsonPayload.message="b" AND jsonPayload.outcome="x"',
     "a", {"outcome": "x"}, True),
    ('jsonPayload.message=("a" OR "b") jsonPayload.outcome="x"', "b", {"outcome": "x"}, True),
    ('jsonPayload.message="a" AND NOT jsonPayload.outcome="x"', "a", {"outcome": "x"}, False),
    ('jsonPayload.message="a" AND -jsonPayload.outcome="x"', "a", {"outcome": "y"}, True),
    ('jsonPayload.message="a" AND severity>=ERROR', "a", {}, False),
    ('log_id("run.googleapis.com/requests") AND httpRequest.status>=500', "a", {}, False),
    ('resource.labels.service_name="w" AND jsonPayload.message="a"', "a", {}, None),
])
def test_filters_evaluate_like_cloud_logging(
    text: str, message: str, fields: dict[str, str], expected: bool | None
) -> None:
    assert log_filter.evaluate(log_filter.parse(text), _entry(message, **fields)) is expected


def test_an_unreadable_filter_is_reported(load_broken: Callable[..., hcl.Config]) -> None:
    config = load_broken(("monitoring.tf", 'jsonPayload.message=\\"renewer store failure\\"',
                          'jsonPayload.message=(\\"renewer store failure\\"'))
    found = monitoring_check.check(config, ROOT)
    assert any('this["renewer_store_failures"]: cannot read its filter' in p for p in found)
