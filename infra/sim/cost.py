"""A month of a deployment's usage priced from `bench/prices.json`.

Usage comes from the simulation as daily totals at full size; each line is
monthly usage less its free tier, times its price. The Calendar API is priced
only above the daily billing threshold and only when a price is given (none
is public yet).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PRICES = ROOT / "bench" / "prices.json"
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True)
class DailyUsage:
    """What a deployment of `calendars` calendars does in a day."""

    calendars: int
    worker_runs: float
    webhook_requests: float
    renewer_runs: float
    firestore_reads: float
    firestore_writes: float
    feed_entries: float
    task_operations: float  # tasks created + dispatch attempts
    pubsub_billed_bytes: float
    calendar_requests: float


@dataclass
class MonthlyCost:
    lines: dict[str, float] = field(default_factory=dict)
    calendar_billable_requests: float = 0.0  # per month, above the daily threshold
    calendar_priced: bool = False

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def monthly_cost(usage: DailyUsage, table: dict[str, Any],
                 calendar_price: float | None = None) -> MonthlyCost:
    prices, assume = table["prices"], table["usage"]
    month = DAYS_PER_MONTH
    cost = MonthlyCost()

    def charge(name: str, line: str, amount: float, free: float = 0.0) -> None:
        cost.lines[line] = cost.lines.get(line, 0.0) + max(amount - free, 0.0) * float(
            prices[name]["price"])

    vcpu_seconds = month * (
        usage.worker_runs * assume["worker_seconds_per_run"] * assume["worker_vcpu"]
        + usage.webhook_requests * assume["webhook_seconds_per_request"] * assume["webhook_vcpu"]
        + usage.renewer_runs * assume["renewer_seconds_per_run"] * assume["renewer_vcpu"])
    gib_seconds = month * (
        usage.worker_runs * assume["worker_seconds_per_run"] * assume["worker_gib"]
        + usage.webhook_requests * assume["webhook_seconds_per_request"] * assume["webhook_gib"]
        + usage.renewer_runs * assume["renewer_seconds_per_run"] * assume["renewer_gib"])
    requests = month * (usage.worker_runs + usage.webhook_requests + usage.renewer_runs)
    charge("cloud_run_vcpu_second", "functions (CPU)", vcpu_seconds,
           prices["cloud_run_vcpu_second"]["free_per_month"])
    charge("cloud_run_gib_second", "functions (memory)", gib_seconds,
           prices["cloud_run_gib_second"]["free_per_month"])
    charge("cloud_run_request", "functions (requests)", requests,
           prices["cloud_run_request"]["free_per_month"])
    charge("firestore_document_read", "Firestore reads", usage.firestore_reads * month,
           prices["firestore_document_read"]["free_per_day"] * month)
    charge("firestore_document_write", "Firestore writes", usage.firestore_writes * month,
           prices["firestore_document_write"]["free_per_day"] * month)
    retention_days = 30.0
    stored_gib = (usage.calendars * assume["stored_events_per_calendar"]
                  * assume["bytes_per_snapshot"]
                  + usage.feed_entries * retention_days * assume["bytes_per_feed_entry"]) / 2**30
    charge("firestore_storage_gib_month", "Firestore storage", stored_gib,
           prices["firestore_storage_gib_month"]["free_gib"])
    charge("cloud_tasks_operation", "Cloud Tasks", usage.task_operations * month,
           prices["cloud_tasks_operation"]["free_per_month"])
    charge("pubsub_tib", "Pub/Sub", usage.pubsub_billed_bytes * month / 2**40,
           prices["pubsub_tib"]["free_gib_per_month"] / 1024)
    charge("cloud_scheduler_job_month", "Cloud Scheduler", 1.0,
           prices["cloud_scheduler_job_month"]["free_jobs"])
    threshold = float(prices["calendar_request_over_threshold"]["daily_threshold"])
    cost.calendar_billable_requests = max(usage.calendar_requests - threshold, 0.0) * month
    price = calendar_price if calendar_price is not None else (
        prices["calendar_request_over_threshold"]["price"])
    if price is not None:
        cost.calendar_priced = True
        cost.lines["Calendar API (over the threshold)"] = (
            cost.calendar_billable_requests * float(price))
    return cost
