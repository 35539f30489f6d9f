"""Every resource waits for the API it needs (terraform/apis.tf).

On a fresh project nothing is enabled: a resource created before its API is
on fails, and since Terraform creates independent resources in parallel,
"before" is a race unless the graph says otherwise. A resource waits for an
API when it depends on `google_project_service.enabled["<api>"]` (or on the
whole set) directly through `depends_on` or a reference, or through any
resource, data source or local it references.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from infra.tfcheck import hcl

ENABLEMENT = "google_project_service"
ALL = "*"
IAM = "iam.googleapis.com"

# Resource (or data source) type -> the APIs it calls. IAM resources also need
# iam.googleapis.com (policy bindings and conditions), added below.
API_BY_TYPE: dict[str, tuple[str, ...]] = {
    "google_project": ("cloudresourcemanager.googleapis.com",),
    "google_project_iam_member": ("cloudresourcemanager.googleapis.com",),
    "google_service_account": (IAM,),
    "google_service_account_iam_member": (IAM,),
    "google_storage_bucket": ("storage.googleapis.com",),
    "google_storage_bucket_object": ("storage.googleapis.com",),
    "google_storage_bucket_iam_member": ("storage.googleapis.com",),
    "google_artifact_registry_repository": ("artifactregistry.googleapis.com",),
    "google_artifact_registry_repository_iam_member": ("artifactregistry.googleapis.com",),
    "google_cloudfunctions2_function": ("cloudfunctions.googleapis.com",
                                        "cloudbuild.googleapis.com", "run.googleapis.com",
                                        "artifactregistry.googleapis.com"),
    "google_cloud_run_service_iam_member": ("run.googleapis.com",),
    "google_cloud_tasks_queue": ("cloudtasks.googleapis.com",),
    "google_cloud_tasks_queue_iam_member": ("cloudtasks.googleapis.com",),
    "google_cloud_scheduler_job": ("cloudscheduler.googleapis.com",),
    "google_secret_manager_secret": ("secretmanager.googleapis.com",),
    "google_secret_manager_secret_version": ("secretmanager.googleapis.com",),
    "google_secret_manager_secret_iam_member": ("secretmanager.googleapis.com",),
    "google_firestore_database": ("firestore.googleapis.com",),
    "google_firestore_index": ("firestore.googleapis.com",),
    "google_firestore_field": ("firestore.googleapis.com",),
    "google_logging_metric": ("logging.googleapis.com",),
    "google_monitoring_alert_policy": ("monitoring.googleapis.com",),
    "google_pubsub_topic": ("pubsub.googleapis.com",),
    "google_pubsub_subscription": ("pubsub.googleapis.com",),
    "google_pubsub_topic_iam_member": ("pubsub.googleapis.com",),
    "google_pubsub_subscription_iam_member": ("pubsub.googleapis.com",),
}
# Types that call no Google API.
NO_API = {"google_project_service", "archive_file", "random_bytes", "time_sleep"}

_LOCAL = re.compile(r"(?<![\w.])local\.([A-Za-z_][\w-]*)")


def required(type_: str) -> tuple[str, ...] | None:
    if type_ in NO_API:
        return ()
    apis = API_BY_TYPE.get(type_)
    if apis is None:
        return None
    return (*apis, IAM) if "_iam_" in type_ and IAM not in apis else apis


def enabled(config: hcl.Config) -> set[str]:
    services = config.locals.get("services", "")
    return set(re.findall(r'"?([a-z0-9-]+\.googleapis\.com)"?', str(services)))


def check(config: hcl.Config) -> list[str]:
    problems: list[str] = []
    on = enabled(config)
    if config.resource(ENABLEMENT, "enabled") is None:
        return ['[apis] no google_project_service "enabled" (for_each over local.services)']
    waits = _Waits(config)
    for block in config.blocks:
        needed = required(block.type)
        if needed is None:
            problems.append(f"[apis] {block.address}: no API known for {block.type}; add it "
                            "to infra/tfcheck/apis.py API_BY_TYPE")
            continue
        have = waits.of(block.kind, block.type, block.name)
        for api in needed:
            if api not in on:
                problems.append(f"[apis] {block.address} needs {api}, which apis.tf does "
                                "not enable")
            elif api not in have and ALL not in have:
                problems.append(f"[apis] {block.address} does not wait for {api}: depend on "
                                f'google_project_service.enabled["{api}"] (directly or '
                                "through a reference)")
    return problems


class _Waits:
    """The APIs each block waits for, through depends_on, references and locals."""

    def __init__(self, config: hcl.Config) -> None:
        self.config = config
        self.blocks = {(b.kind, b.type, b.name): b for b in config.blocks}
        self.of = cache(self._of)
        self._visiting: set[tuple[str, str, str]] = set()

    def _of(self, kind: str, type_: str, name: str) -> frozenset[str]:
        node = (kind, type_, name)
        block = self.blocks.get(node)
        if block is None or node in self._visiting:
            return frozenset()
        self._visiting.add(node)
        try:
            return frozenset(self._collect(block.body, set()))
        finally:
            self._visiting.discard(node)

    def _collect(self, value: Any, seen_locals: set[str]) -> set[str]:
        found: set[str] = set()
        for ref in hcl.references(value):
            if ref.type == ENABLEMENT and not ref.data:
                found.add(ref.key if ref.key is not None else ALL)
            else:
                found |= self.of("data" if ref.data else "resource", ref.type, ref.name)
        for text in hcl.strings(value):
            for name in _LOCAL.findall(text):
                if name in seen_locals or name not in self.config.locals:
                    continue
                seen_locals.add(name)
                found |= self._collect(self.config.locals[name], seen_locals)
        return found
