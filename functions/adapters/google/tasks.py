"""Adapter over google-cloud-tasks: sync tasks to the worker, with OIDC tokens.

Task names are derived from (subscription or account, origin, generation), so
queueing the same request twice is harmless: Cloud Tasks answers AlreadyExists for a
name it has seen (the local emulator does not de-duplicate, so no guarantee
may rest on this alone). `CLOUD_TASKS_EMULATOR_HOST` switches to the emulator.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import tasks_v2
from google.protobuf import timestamp_pb2

from functions.config import Settings
from functions.errors import QueueUnavailable
from functions.ports import AccountTaskQueue, TaskQueue

# Cloud Tasks caps an HTTP task's dispatch deadline at 30 minutes; the worker's
# full sync must fit inside it (see README, "largest calendar"). The deployed
# value is CALSYNC_DISPATCH_DEADLINE_SECONDS, the same as the worker's timeout.
DISPATCH_DEADLINE_SECONDS = 1800
ENQUEUE_TIMEOUT_SECONDS = 10.0


def task_id(sub_id: str, origin: str, generation: int) -> str:
    """A stable, name-safe task id (letters, digits, hyphens; ≤ 500 chars)."""
    digest = hashlib.sha256(f"{sub_id}\x00{origin}\x00{generation}".encode()).hexdigest()
    return f"sync-{origin}-{generation}-{digest[:32]}"


def account_task_id(account_id: str, origin: str, generation: int) -> str:
    """The calendar-list task's id: a name of its own (`list-`), so an account and a
    subscription can never share one."""
    digest = hashlib.sha256(
        f"account\x00{account_id}\x00{origin}\x00{generation}".encode()).hexdigest()
    return f"list-{origin}-{generation}-{digest[:32]}"


def _timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment.astimezone(UTC).replace(tzinfo=None))
    return stamp


def build_client(settings: Settings) -> Any:
    """The real client; over an insecure gRPC channel when an emulator is configured."""
    if settings.tasks_emulator_host:
        import grpc
        from google.cloud.tasks_v2.services.cloud_tasks.transports import (
            CloudTasksGrpcTransport,
        )

        channel = grpc.insecure_channel(settings.tasks_emulator_host)
        return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))
    return tasks_v2.CloudTasksClient()


class CloudTasksQueue(TaskQueue, AccountTaskQueue):
    """Queues `{"subscription_id": ...}` and `{"account_id": ...}` POSTs to the sync worker."""

    def __init__(self, settings: Settings, client: Any | None = None,
                 queue_path: str | None = None, renewer_queue_path: str | None = None) -> None:
        self._settings = settings
        self._client = client if client is not None else build_client(settings)
        self._queue_path = queue_path or settings.queue_path
        # The renewer's own tasks go to their queue (CALSYNC_RENEWER_QUEUE), else
        # to this one.
        self._renewer_queue_path = renewer_queue_path or (
            settings.renewer_queue_path if settings.renewer_queue else self._queue_path)

    @property
    def queue_path(self) -> str:
        return self._queue_path

    def enqueue_sync(
        self,
        sub_id: str,
        generation: int,
        not_before: datetime | None = None,
        *,
        origin: str = "request",
    ) -> None:
        task = self.build_task(sub_id, generation, not_before, origin=origin)
        self._create(task, f"sync task for {sub_id}")

    def enqueue_account_sync(self, account_id: str, generation: int,
                             not_before: datetime | None = None, *,
                             origin: str = "request") -> None:
        task = self._task(account_task_id(account_id, origin, generation),
                          {"account_id": account_id}, not_before)
        self._create(task, f"calendar-list task for {account_id}")

    def _create(self, task: tasks_v2.Task, what: str) -> None:
        try:
            self._client.create_task(parent=self._queue_path, task=task,
                                     timeout=ENQUEUE_TIMEOUT_SECONDS)
        except gexc.AlreadyExists:
            return  # the same request is already queued (or ran recently)
        except (gexc.GoogleAPICallError, gexc.RetryError) as err:
            raise QueueUnavailable(f"could not queue {what}: {type(err).__name__}") from err

    def enqueue_renewal(self, not_before: datetime | None = None, name: str | None = None,
                        body: dict[str, Any] | None = None) -> None:
        """Queue a renewer task: a continuation (its work was bounded; more is due) or
        one shard of a tick's fan-out; `body` says which (`{}`: a whole tick).

        `name` makes it idempotent: two runs asking for the same task queue one
        (in production; the emulator does not de-duplicate).
        """
        settings = self._settings
        if not settings.renewer_url:
            raise QueueUnavailable("CALSYNC_RENEWER_URL is not set: cannot fan out")
        http_request: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST, "url": settings.renewer_url,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body or {}, separators=(",", ":")).encode(),
        }
        # The renewer has its own invoker account: the one that may call the
        # worker (and that the webhook may act as) cannot call the renewer.
        invoker = settings.renewer_invoker_sa or settings.tasks_invoker_sa
        if invoker:
            http_request["oidc_token"] = {"service_account_email": invoker,
                                          "audience": settings.renewer_url}
        task: dict[str, Any] = {"http_request": http_request}
        if name is not None:
            task["name"] = f"{self._renewer_queue_path}/tasks/{name}"
        if not_before is not None:
            task["schedule_time"] = _timestamp(not_before)
        try:
            self._client.create_task(parent=self._renewer_queue_path, task=tasks_v2.Task(task),
                                     timeout=ENQUEUE_TIMEOUT_SECONDS)
        except gexc.AlreadyExists:
            return  # another run queued this continuation already
        except (gexc.GoogleAPICallError, gexc.RetryError) as err:
            raise QueueUnavailable(f"could not queue renewer continuation: "
                                   f"{type(err).__name__}") from err

    def build_task(
        self, sub_id: str, generation: int, not_before: datetime | None, *, origin: str
    ) -> tasks_v2.Task:
        return self._task(task_id(sub_id, origin, generation), {"subscription_id": sub_id},
                          not_before)

    def _task(self, name: str, body: dict[str, str],
              not_before: datetime | None) -> tasks_v2.Task:
        settings = self._settings
        http_request: dict[str, Any] = {
            "http_method": tasks_v2.HttpMethod.POST,
            "url": settings.worker_url,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(body).encode(),
        }
        if settings.tasks_invoker_sa:
            http_request["oidc_token"] = {
                "service_account_email": settings.tasks_invoker_sa,
                "audience": settings.worker_url,
            }
        task: dict[str, Any] = {
            "name": f"{self._queue_path}/tasks/{name}",
            "http_request": http_request,
            "dispatch_deadline": {"seconds": settings.dispatch_deadline},
        }
        if not_before is not None:
            task["schedule_time"] = _timestamp(not_before)
        return tasks_v2.Task(task)
