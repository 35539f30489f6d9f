"""The log-based metrics count lines the code writes, and the alerts fire when it matters.

The code's log lines are read with `ast` (`log_lines`: message, severity, each
field's possible values) and every metric filter is evaluated against them
(`log_filter`). A metric on a message, a field or a (field, value) pair the
code never writes counts nothing and its alert never fires; nothing else
would notice. So:

- pairs: every `jsonPayload.FIELD="VALUE"` (and every message, field and
  severity) a metric compares is one the code writes *in lines that also
  meet the rest of that branch of the filter*: `outcome="crashed"` next to
  `message="sync run"` is reported, though "crashed" is logged elsewhere.
  What the contract promises and the code does not write yet is listed in
  AHEAD_OF_CODE and reported as such until the code has it;
- our own faults alert: every line the code can log at ERROR, and the
  warnings in MUST_ALERT, is counted by a metric an alert policy watches;
- noise: attempts that are retried (PERSISTENT_ONLY) are counted by no
  metric; user-caused failures (USER_CAUSED) are logged below ERROR and
  alerted at WARNING at most; transient failures (RATE_ONLY) alert on a
  ratio or a sustained rate, never on one bad five minutes;
- coverage: an absence alert on each line a stopped job stops writing
  (ABSENCE), a distribution metric with an alert on each age the renewer
  reports (AGE_FIELDS), alerts on the built-in metrics in
  `alert_policies.BUILTIN_METRICS` with the labels they have, and on each
  status Cloud Run answers the webhook's callers instead of the webhook
  (WEBHOOK_REFUSALS);
- every metric is watched by an alert (as its subject or the denominator of
  a ratio), and every alert notifies var.alert_notification_channels.
"""

from __future__ import annotations

import re
from pathlib import Path

from infra.tfcheck import hcl, log_filter, log_lines
from infra.tfcheck.alert_policies import (
    BUILTIN_METRICS,
    Alert,
    Metric,
    alerts,
    builtin_problems,
    metrics,
    seconds,
)
from infra.tfcheck.log_lines import Entry

# What the integration contract promises and the code does not write yet.
AHEAD_OF_CODE: dict[str, str] = {}

# Warnings that still mean calsync itself is failing: counted, with an alert.
MUST_ALERT = {
    "renewer store failure": "the renewer could not read or write Firestore or the queue",
}

# (message, severity): an attempt retried with backoff, counted only once it persists.
PERSISTENT_ONLY = {
    ("channel renewal failed", "WARNING"): "a failed renewal attempt is retried with backoff; "
                                           "the third in a row is logged at ERROR",
}

# (message, field, value): the user's doing (a revoked grant, a deleted calendar).
USER_CAUSED = {
    ("sync run", "outcome", "failed"): "the subscription went to error for a reason of its "
                                       "own (revoked grant, calendar gone, refused event)",
}

# (message, field, value): retried by the queue; only a high share or a lasting rate matters.
RATE_ONLY = {
    ("sync run", "outcome", "transient"): "a transient failure is retried by Cloud Tasks",
}

# Lines a stopped job stops writing: an absence alert on each.
ABSENCE = {
    "renewer run": "a paused or failing Cloud Scheduler job, or a renewer that fails "
                   "before it reports: the oldest-pending metric then has no data either",
}

# Ages the renewer reports per run: a distribution metric and an alert on each.
AGE_FIELDS = {
    "oldest_pending_age_s": "sync requests waiting for a run",
    "oldest_outbox_age_s": "change entries waiting to be published",
}

# Statuses Cloud Run answers instead of the webhook: Google does not retry them.
WEBHOOK_REFUSALS = {"403": "invoker check (allUsers grant missing) or channel tokens refused",
                    "429": "no instance available (max instances reached)"}
WEBHOOK_SERVICE = "local.function_names.webhook"

SUSTAINED_SECONDS = 600
PAGING_SEVERITIES = {"ERROR", "CRITICAL"}


def check(config: hcl.Config, root: Path) -> list[str]:
    lines = log_lines.read(root)
    entries = list(log_lines.entries(lines))
    found_metrics = metrics(config)
    found_alerts = alerts(config)
    problems = [f"[monitoring] {m.address}: cannot read its filter: {m.error}"
                for m in found_metrics if m.filter is None]
    readable = [m for m in found_metrics if m.filter is not None]
    problems += check_pairs(readable, entries)
    problems += check_noise(readable, found_alerts, entries)
    problems += check_coverage(readable, found_alerts, entries)
    problems += check_wiring(found_metrics, found_alerts)
    return problems


def logged_names(root: Path) -> set[str]:
    """Every message and field name the code logs (open lines: their module's names)."""
    names: set[str] = set()
    for line in log_lines.read(root):
        names |= {line.message, *line.fields, *line.open_fields}
    return names


# --- pairs ---------------------------------------------------------------------------


def check_pairs(found: list[Metric], entries: list[Entry]) -> list[str]:
    problems: list[str] = []
    for metric in found:
        assert metric.filter is not None
        for conjunction in log_filter.dnf(metric.filter):
            for problem in _dead_literals(conjunction, entries):
                if problem not in problems:
                    problems.append(f"[monitoring] {metric.address} {problem}")
    return list(dict.fromkeys(problems))


def _dead_literals(conjunction: list[log_filter.Literal], entries: list[Entry]) -> list[str]:
    """What in one branch of a filter no line the code writes can meet."""
    if not any(c.path == "severity" or c.path.startswith("jsonPayload.")
               for _n, c in conjunction):
        return []  # a branch on request logs (httpRequest.status...), not on our lines
    messages: list[log_filter.Literal] = [
        (n, c) for n, c in conjunction
        if not n and c.path == "jsonPayload.message" and c.op == "="]
    problems: list[str] = []
    for _negated, comparison in messages:
        for value in comparison.values:
            if not any(e.message == value for e in entries):
                problems.append(_unlogged(value, "as a message"))
    if problems:
        return problems
    scope = [e for e in entries if log_filter.evaluate_literals(messages, e) is not False]
    where = " or ".join(repr(v) for _n, c in messages for v in c.values) or "any"
    for negated, comparison in conjunction:
        if negated or (negated, comparison) in messages:
            continue
        if comparison.path != "severity" and not comparison.path.startswith("jsonPayload."):
            continue
        field = comparison.path.removeprefix("jsonPayload.")
        if comparison.op in ("=", ":") and comparison.path != "severity":
            for value in comparison.values:
                single = comparison.with_values(value)
                if not any(log_filter.evaluate_literals([*messages, (False, single)], e)
                           is not False for e in scope):
                    carried = any(e.values(field)[0] for e in scope)
                    problems.append(_unlogged(value, f"in jsonPayload.{field} of {where} lines")
                                    if carried else _unlogged(field, f"in {where} lines"))
        elif not any(log_filter.evaluate_literals([*messages, (False, comparison)], e)
                     is not False for e in scope):
            subject = field if comparison.path != "severity" else \
                f"severity{comparison.op}{'|'.join(comparison.values)}"
            problems.append(_unlogged(subject, f"in {where} lines"))
    if not problems and not any(log_filter.evaluate_literals(conjunction, e) is not False
                                for e in entries):
        problems.append("has a branch no line the code writes meets (each comparison "
                        "alone is met, never all together)")
    return problems


def _unlogged(name: str, where: str) -> str:
    if name in AHEAD_OF_CODE:
        return (f"counts {name!r}, which functions/ does not log yet "
                f"({AHEAD_OF_CODE[name]})")
    return f"counts {name!r}, which functions/ never logs {where}: the metric stays at zero"


# --- noise ---------------------------------------------------------------------------


def _counting(alert_list: list[Alert], found: list[Metric], entry: Entry) -> list[Alert]:
    """The alerts whose subject (not a ratio's denominator) may count `entry`."""
    filters = {m.key: m.filter for m in found if m.filter is not None}
    return [a for a in alert_list if a.log_metric in filters
            and log_filter.could_match(filters[a.log_metric], entry)]


def _matching(entries: list[Entry], message: str, field: str | None = None,
              value: str | None = None, severity: str | None = None) -> list[Entry]:
    chosen = []
    for entry in entries:
        if entry.message != message or (severity is not None and entry.severity != severity):
            continue
        if field is not None:
            present, values = entry.values(field)
            if not present or (values is not None and value not in values):
                continue
        chosen.append(entry)
    return chosen


def check_noise(found: list[Metric], alert_list: list[Alert], entries: list[Entry]) -> list[str]:
    problems: list[str] = []
    for (message, severity), why in PERSISTENT_ONLY.items():
        for entry in _matching(entries, message, severity=severity):
            for metric in found:
                if metric.filter is not None and log_filter.could_match(metric.filter, entry):
                    problems.append(f"[monitoring] {metric.address} counts {message!r} at "
                                    f"{severity} ({why}): count it only once it persists")
    for (message, field, value), why in USER_CAUSED.items():
        for entry in _matching(entries, message, field, value):
            rank = log_filter.SEVERITY_RANK.get(str(entry.severity), 0)
            if rank >= log_filter.SEVERITY_RANK["ERROR"]:
                problems.append(f"[monitoring] {entry.line.where}: {message!r} with "
                                f"{field}={value!r} is logged at {entry.severity}, but {why}: "
                                "log it at WARNING")
            for alert in _counting(alert_list, found, entry):
                if alert.severity in PAGING_SEVERITIES:
                    problems.append(f"[monitoring] {alert.address} alerts at {alert.severity} "
                                    f"on {message!r} with {field}={value!r}, but {why}: "
                                    "alert at WARNING")
    for (message, field, value), why in RATE_ONLY.items():
        for entry in _matching(entries, message, field, value):
            for alert in _counting(alert_list, found, entry):
                sustained = seconds(alert.duration)
                if alert.denominator is None and sustained is not None \
                        and sustained < SUSTAINED_SECONDS:
                    problems.append(f"[monitoring] {alert.address} alerts on a count of "
                                    f"{message!r} with {field}={value!r} ({why}): alert on its "
                                    "ratio to all such lines (denominator_filter) or on a "
                                    f"rate sustained for at least {SUSTAINED_SECONDS} s")
    return list(dict.fromkeys(problems))


# --- coverage ------------------------------------------------------------------------


def check_coverage(found: list[Metric], alert_list: list[Alert],
                   entries: list[Entry]) -> list[str]:
    problems: list[str] = []
    error = log_filter.SEVERITY_RANK["ERROR"]
    for entry in entries:
        loud = log_filter.SEVERITY_RANK.get(str(entry.severity), 0) >= error
        if not (loud or entry.message in MUST_ALERT):
            continue
        if not _counting(alert_list, found, entry):
            problems.append(f"[monitoring] {entry.describe()} ({entry.line.where}) is counted "
                            "by no metric an alert watches: calsync's own faults must alert")
    for message, why in ABSENCE.items():
        absent = [a for a in alert_list if a.condition == "condition_absent"]
        if not any(_counting(absent, found, entry) for entry in _matching(entries, message)):
            problems.append(f"[monitoring] no absence alert (condition_absent) on {message!r} "
                            f"lines: {why}")
    extracted = {m.value_field: m for m in found if m.value_field}
    watched = {a.log_metric for a in alert_list}
    for name, what in AGE_FIELDS.items():
        metric = extracted.get(f"jsonPayload.{name}")
        if metric is None or metric.key not in watched:
            problems.append(f"[monitoring] no alert on a distribution metric of "
                            f"jsonPayload.{name} (age of the oldest {what})")
    builtins = {a.builtin for a in alert_list if a.builtin}
    for metric_type in sorted(set(BUILTIN_METRICS) - builtins):
        problems.append(f"[monitoring] no alert on {metric_type}")
    for code, why in WEBHOOK_REFUSALS.items():
        if not any(a.builtin == "run.googleapis.com/request_count"
                   and WEBHOOK_SERVICE in a.filter and code in _response_codes(a.filter)
                   for a in alert_list):
            problems.append(f"[monitoring] no alert on the webhook's {code} answers "
                            f"(run.googleapis.com/request_count, response_code): {why}")
    return problems


def _response_codes(text: str) -> set[str]:
    codes: set[str] = set()
    for match in re.finditer(r'metric\.labels?\.response_code\s*=\s*'
                             r'(?:"(\d{3})"|one_of\(([^)]*)\))', text):
        codes |= {match.group(1)} if match.group(1) else set(re.findall(r'"(\d{3})"',
                                                                         match.group(2)))
    return codes


# --- wiring --------------------------------------------------------------------------


def check_wiring(found: list[Metric], alert_list: list[Alert]) -> list[str]:
    problems: list[str] = []
    watched = {a.log_metric for a in alert_list} | {a.denominator for a in alert_list}
    for metric in found:
        if metric.key not in watched:
            problems.append(f"[monitoring] {metric.address} has no alert policy")
    for alert in alert_list:
        if alert.channels != "var.alert_notification_channels":
            problems.append(f"[monitoring] {alert.address} must notify "
                            f"var.alert_notification_channels, not {alert.channels!r}")
        if alert.severity not in {"CRITICAL", "ERROR", "WARNING"}:
            problems.append(f"[monitoring] {alert.address}: severity {alert.severity!r} is "
                            "not CRITICAL, ERROR or WARNING")
        if alert.log_metric is None and alert.builtin is not None:
            problems += builtin_problems(alert)
        elif alert.log_metric is None:
            problems.append(f"[monitoring] {alert.address}: its filter names no log metric "
                            "and no metric type")
    return list(dict.fromkeys(problems))
