"""terraform/'s log-based metrics and alert policies, read into small values.

A `Metric` is one `google_logging_metric` instance with its filter parsed
(`log_filter`); an `Alert` is one condition of a `google_monitoring_alert_policy`
instance: what it counts (a log metric of ours, or a built-in metric type),
over which denominator, how long it must hold, and the policy's severity.

`BUILTIN_METRICS` is what the alerts rely on from Google's own metrics: each
type, the monitored resource it is written against, and its labels (Cloud
Monitoring's metric lists for Cloud Run, Pub/Sub and Cloud Tasks). An alert
filter naming anything else is reported, because Cloud Monitoring would
refuse the policy at apply time, or accept it and never fire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from infra.tfcheck import hcl, log_filter

METRIC = "google_logging_metric"
ALERT = "google_monitoring_alert_policy"
CONDITIONS = ("condition_threshold", "condition_absent")


@dataclass(frozen=True)
class BuiltinMetric:
    resource_type: str
    resource_labels: frozenset[str]
    metric_labels: frozenset[str]


_RUN_REVISION = frozenset({"project_id", "service_name", "revision_name", "location",
                           "configuration_name"})
_PUBSUB_SUBSCRIPTION = frozenset({"project_id", "subscription_id"})
BUILTIN_METRICS = {
    # Requests that reached Cloud Run, by status: its own 429 ("no available
    # instance") and 403 (invoker check) included, which the function never sees.
    "run.googleapis.com/request_count": BuiltinMetric(
        "cloud_run_revision", _RUN_REVISION,
        frozenset({"response_code", "response_code_class", "route"})),
    # Messages Pub/Sub forwarded to the dead-letter topic, per source subscription.
    "pubsub.googleapis.com/subscription/dead_letter_message_count": BuiltinMetric(
        "pubsub_subscription", _PUBSUB_SUBSCRIPTION, frozenset({"result"})),
    # Age in seconds of the oldest message a subscription has not had acknowledged.
    "pubsub.googleapis.com/subscription/oldest_unacked_message_age": BuiltinMetric(
        "pubsub_subscription", _PUBSUB_SUBSCRIPTION, frozenset()),
    # Tasks in a queue, scheduled ones included.
    "cloudtasks.googleapis.com/queue/depth": BuiltinMetric(
        "cloud_tasks_queue", frozenset({"project_id", "queue_id", "target_type", "location"}),
        frozenset()),
}

_METRIC_TYPE = re.compile(r'metric\.type\s*=\s*"(?P<type>[^"]+)"')
_RESOURCE_TYPE = re.compile(r'resource\.type\s*=\s*"(?P<type>[^"]+)"')
_LABEL = re.compile(r"\b(?P<kind>metric|resource)\.labels?\.(?P<name>[a-z_]+)")
_INTERPOLATION = re.compile(r"\$\{[^{}]*\}")
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')


@dataclass(frozen=True)
class Metric:
    address: str
    key: str
    text: str
    filter: log_filter.Node | None  # None when it cannot be parsed (see `error`)
    value_field: str | None  # `jsonPayload.x` of a distribution's value extractor
    error: str | None = None


@dataclass(frozen=True)
class Alert:
    address: str
    key: str
    condition: str  # "condition_threshold" | "condition_absent"
    filter: str
    log_metric: str | None  # key of the google_logging_metric it counts
    builtin: str | None  # a built-in metric type it counts instead
    denominator: str | None  # key of the log metric it is a ratio to
    duration: str
    severity: str
    channels: Any


def metrics(config: hcl.Config) -> list[Metric]:
    found = []
    for block in config.resources(METRIC):
        text = resolve(str(block.body.get("filter", "")), config)
        extractor = str(block.body.get("value_extractor") or "")
        value = re.search(r'EXTRACT\((?:\$\{")?(jsonPayload\.[\w.]+)', extractor)
        try:
            parsed, error = log_filter.parse(text), None
        except log_filter.FilterSyntaxError as err:
            parsed, error = None, str(err)
        found.append(Metric(block.address, block.key or block.name, text, parsed,
                            value.group(1) if value else None, error))
    return found


def alerts(config: hcl.Config) -> list[Alert]:
    found = []
    for block in config.resources(ALERT):
        for condition in block.body.get("conditions", []):
            for kind in CONDITIONS:
                for spec in condition.get(kind, []):
                    text = spell_locals(str(spec.get("filter", "")), config)
                    builtin = _METRIC_TYPE.search(text)
                    found.append(Alert(
                        address=block.address, key=block.key or block.name, condition=kind,
                        filter=text, log_metric=hcl.single_reference(text, METRIC),
                        builtin=None if builtin is None or "logging.googleapis.com/user/"
                        in builtin["type"] else builtin["type"],
                        denominator=hcl.single_reference(spec.get("denominator_filter"), METRIC),
                        duration=str(spec.get("duration", "")),
                        severity=str(hcl.unquote(block.body.get("severity", ""))),
                        channels=hcl.unquote(block.body.get("notification_channels"))))
    return found


def builtin_problems(alert: Alert) -> list[str]:
    """The alert's filter against what the built-in metric it names has."""
    spec = BUILTIN_METRICS.get(alert.builtin or "")
    if spec is None:
        return [f"[monitoring] {alert.address}: metric type {alert.builtin!r} is neither one "
                "of our log metrics nor a built-in metric the checks know "
                f"({', '.join(sorted(BUILTIN_METRICS))})"]
    problems = []
    resource = _RESOURCE_TYPE.search(alert.filter)
    if resource is None or resource["type"] != spec.resource_type:
        problems.append(f"[monitoring] {alert.address}: {alert.builtin} is written against "
                        f'resource.type="{spec.resource_type}", not '
                        f"{resource['type'] if resource else 'an unnamed resource'!r}")
    for match in _LABEL.finditer(alert.filter):
        known = spec.metric_labels if match["kind"] == "metric" else spec.resource_labels
        if match["name"] not in known:
            problems.append(f"[monitoring] {alert.address}: {alert.builtin} has no "
                            f"{match['kind']} label {match['name']!r}")
    return problems


def seconds(duration: str) -> int | None:
    """`"900s"` -> 900; None when the duration is an expression (a variable)."""
    literal = re.fullmatch(r"(?:\$\{)?(\d+)\}?s", duration.strip())
    return int(literal.group(1)) if literal else None


def spell_locals(text: str, config: hcl.Config) -> str:
    """Every `${local.x}` whose value is a string, spelled out (nested ones too)."""
    for _ in range(5):
        replaced = re.sub(r"\$\{local\.([\w-]+)\}",
                          lambda m: str(config.locals[m.group(1)])
                          if isinstance(config.locals.get(m.group(1)), str) else m.group(0),
                          text)
        if replaced == text:
            break
        text = replaced
    return text


def resolve(text: str, config: hcl.Config) -> str:
    """String locals spelled out; any other interpolation outside quotes becomes
    `terraform()`, which the filter reader treats as unknown."""
    text = spell_locals(text, config)
    parts, position = [], 0
    for quoted in _QUOTED.finditer(text):
        parts.append(_INTERPOLATION.sub("terraform()", text[position:quoted.start()]))
        parts.append(quoted.group(0))
        position = quoted.end()
    parts.append(_INTERPOLATION.sub("terraform()", text[position:]))
    return "".join(parts)
