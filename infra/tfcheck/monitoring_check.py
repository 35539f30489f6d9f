"""The log-based metrics look for log lines the code writes, and each one alerts.

A metric whose filter names a message or a field the functions never log
counts nothing, and its alert never fires: nothing else would notice. So
every `jsonPayload.message="..."`, every `jsonPayload.<field>` and every
quoted value compared with a field must appear in functions/ (a string
constant, or a keyword argument name). Lines the code is being changed to
write (AHEAD_OF_CODE) are reported as such until the code has them. Every
metric has an alert policy that notifies var.alert_notification_channels.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from infra.tfcheck import hcl

METRIC = "google_logging_metric"
ALERT = "google_monitoring_alert_policy"

# Log lines the integration contract promises and the code does not write yet.
AHEAD_OF_CODE = {
    "channel renewal failed": "the renewer's line per failed renewal",
    "oldest_pending_age_s": "the renewer run's age of the oldest pending request",
}

_MESSAGE = re.compile(r'jsonPayload\.message\s*=\s*"((?:[^"\\]|\\.)*)"')
_FIELD = re.compile(r"jsonPayload\.([A-Za-z_][\w]*)")
_VALUES = re.compile(r'jsonPayload\.([A-Za-z_]\w*)\s*=\s*\(?((?:\s*"[^"]*"\s*(?:OR)?)+)\)?')


def logged_names(root: Path) -> set[str]:
    """Every string constant and keyword argument name in functions/."""
    names: set[str] = set()
    for path in sorted((root / "functions").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
    return names


def check(config: hcl.Config, root: Path) -> list[str]:
    names = logged_names(root)
    problems: list[str] = []
    metrics = config.resources(METRIC)
    for metric in metrics:
        text = str(metric.body.get("filter", "")).replace('\\"', '"')
        wanted = set(_MESSAGE.findall(text))
        wanted |= {f for f in _FIELD.findall(text) if f != "message"}
        for field, values in _VALUES.findall(text):
            if field != "message":
                wanted |= set(re.findall(r'"([^"]*)"', values))
        for name in sorted(wanted - names):
            if name in AHEAD_OF_CODE:
                problems.append(f"[monitoring] {metric.address} counts {name!r}, which "
                                f"functions/ does not log yet ({AHEAD_OF_CODE[name]})")
            else:
                problems.append(f"[monitoring] {metric.address} counts {name!r}, which "
                                "functions/ never logs: the metric stays at zero")
    alerted = {hcl.single_reference(a.first("conditions", "condition_threshold", "filter"),
                                    METRIC) for a in config.resources(ALERT)}
    for metric in metrics:
        if (metric.key or metric.name) not in alerted:
            problems.append(f"[monitoring] {metric.address} has no alert policy")
    for alert in config.resources(ALERT):
        channels = hcl.unquote(alert.body.get("notification_channels"))
        if channels != "var.alert_notification_channels":
            problems.append(f"[monitoring] {alert.address} must notify "
                            f"var.alert_notification_channels, not {channels!r}")
    return problems
