"""HTTP handlers behind main.py: parse, call one service, map errors to status.

Every malformed request gets a 4xx with a one-line reason. Each handler runs
inside `logged`, which ties every log line to the request's trace and
execution id and turns an unexpected exception into one logged 500.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable

from flask import Flask, Request, Response
from werkzeug.routing import PathConverter

from functions import app, logs
from functions.api.errors import INTERNAL, ApiError
from functions.api.routes import MAX_BODY_BYTES
from functions.api.service import Answer, Api
from functions.config import ConfigError
from functions.errors import CalsyncError, StoreError
from functions.intake.webhook import BadNotification, parse_notification
from functions.lifecycle.sharding import parse_job


class EveryPath(PathConverter):
    """werkzeug's `path` converter with `.` matching a newline too.

    functions-framework routes every request to the function through
    `/<path:path>`, and werkzeug's regex for it (`[^/].*?`) matches no newline:
    a path holding an encoded one (`/v1/subscriptions/a%0Ab`) got the framework's
    HTML 404 before any function ran. With this the function sees every path and
    answers it itself (the API: 400, 404 or 405 in its one JSON error shape).
    """

    regex = "(?s:[^/].*?)"


def route_every_path(app: Flask) -> None:
    """Make `app`'s routes take paths with newlines; call it before the framework adds
    them (main.py does, while functions-framework executes it inside the app's context)."""
    app.url_map.converters["path"] = EveryPath


def _text(status: int, reason: str) -> Response:
    return Response(reason + "\n", status=status, mimetype="text/plain")


Handler = Callable[[Request], Response]


def logged(handler: Handler) -> Handler:
    """Serve `handler` inside the request's log context (trace, execution id).

    An exception the handler did not expect is logged once, as JSON with its
    traceback, and answered 500. The `api` function wraps its handler too.
    """
    @functools.wraps(handler)
    def serve(request: Request) -> Response:
        with logs.request_context(request.headers):
            try:
                return handler(request)
            except Exception as err:  # noqa: BLE001 - one logged 500, never a bare traceback
                logs.log_exception("ERROR", "unhandled exception",
                                   error=type(err).__name__, function=handler.__name__)
                return _text(500, f"{handler.__name__}: internal error")

    return serve


@logged
def webhook(request: Request) -> Response:
    """Google push notification → at most one queued sync; 200 fast."""
    started = time.monotonic()
    if request.method != "POST":
        return _text(405, "webhook: only POST is accepted")
    try:
        note = parse_notification(request.method, request.headers)
    except BadNotification as err:
        logs.log("WARNING", "notification rejected", result="bad_request",
                 outcome="bad_request", reason=str(err))
        return _text(400, f"webhook: {err}")
    try:
        outcome = app.webhook_service().handle(note)
    except ConfigError as err:
        logs.log("ERROR", "webhook misconfigured", reason=str(err))
        return _text(500, "webhook: misconfigured (see logs)")
    except StoreError as err:
        logs.log("WARNING", "notification deferred", result="store_unavailable",
                 outcome="store_unavailable", channel_id=note.channel_id,
                 reason=type(err).__name__)
        return _text(503, "webhook: store unavailable, retry")
    logs.log(
        "WARNING" if outcome.status >= 400 else "INFO", "notification",
        result=outcome.result, outcome=outcome.result, channel_id=note.channel_id,
        subscription=outcome.sub_id,
        resource_state=note.resource_state, message_number=note.message_number,
        status=outcome.status, writes=outcome.writes,
        # Receipt to answer, and to the task's creation: where a notification's time goes.
        duration_s=round(time.monotonic() - started, 4), queued_s=outcome.queued_s,
    )
    return _text(outcome.status, f"webhook: {outcome.reason}")


@logged
def sync_worker(request: Request) -> Response:
    """A Cloud Tasks delivery: `{"subscription_id": ...}` -> one sync run."""
    try:
        worker = app.sync_worker()
    except ConfigError as err:
        logs.log("ERROR", "sync worker misconfigured", error=str(err))
        return _text(500, "sync_worker: misconfigured")
    answer = worker.handle(request.get_data(cache=False))
    return _text(answer.status, answer.reason)


@logged
def renew_channels(request: Request) -> Response:
    """Cloud Scheduler (or a fan-out task): renew channels, sweep, safety net."""
    if request.method != "POST":
        return _text(405, "renew_channels: only POST is accepted")
    try:  # a tick (`{}`), the tick's continuation, or one shard (lifecycle/sharding.py)
        job = parse_job(request.get_data(cache=False))
    except ValueError as err:
        return _text(400, f"renew_channels: {err}")
    try:
        renewer = app.renewer()
        report = (renewer.run_shard(job.shard, job.shards) if job.shard is not None
                  else renewer.run(fan_out=job.fan_out))
    except ConfigError as err:
        logs.log("ERROR", "renewer misconfigured", error=str(err))
        return _text(500, "renew_channels: misconfigured")
    except CalsyncError as err:
        # Transient (store or queue): the scheduler's or the task's retry runs it again.
        logs.log("WARNING", "renewer store failure", error=type(err).__name__)
        return _text(500, "renew_channels: store unavailable, retry")
    return Response(json.dumps(report.to_json()) + "\n", status=200,
                    mimetype="application/json")


_api: Api | None = None


def api(request: Request) -> Response:
    """The consumer API (`main.api`): a Flask request to a JSON answer under `/v1`."""
    global _api
    logs.configure()
    try:
        if _api is None:
            from functions.api.wiring import build

            _api = build()
        consumer_api = _api
    except Exception as err:  # noqa: BLE001 - misconfigured: a loud 500, never a crash
        logs.log("ERROR", "api misconfigured", error=type(err).__name__, reason=str(err)[:300])
        consumer_api = None
    if consumer_api is None:
        answer = Answer(500, ApiError(INTERNAL, "api misconfigured (see logs)").to_json())
    else:
        # At most one byte past the limit is read: the router refuses such a body.
        answer = consumer_api.handle(request.method, request.path,
                                     list(request.args.items(multi=True)),
                                     request.headers.get("Content-Type"),
                                     request.stream.read(MAX_BODY_BYTES + 1))
    return Response(answer.text(), status=answer.status, mimetype="application/json",
                    headers=list(answer.headers))
