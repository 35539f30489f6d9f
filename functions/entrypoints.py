"""HTTP handlers behind main.py: parse, call one service, map errors to status.

Until their issues land, the handlers answer 501 with a one-line reason.
"""

from __future__ import annotations

from flask import Request, Response

from functions import logs


def _text(status: int, reason: str) -> Response:
    return Response(reason + "\n", status=status, mimetype="text/plain")


def webhook(request: Request) -> Response:
    logs.configure()
    # Until the webhook lands: record that Google's notification arrived (never the
    # channel token), so the local demo can show push delivery end to end.
    logs.log(
        "INFO", "notification received (webhook not implemented yet)",
        channel_id=request.headers.get("X-Goog-Channel-ID"),
        resource_state=request.headers.get("X-Goog-Resource-State"),
        message_number=request.headers.get("X-Goog-Message-Number"),
    )
    return _text(501, "webhook: not implemented yet")


def sync_worker(request: Request) -> Response:
    return _text(501, "sync_worker: not implemented yet")


def renew_channels(request: Request) -> Response:
    return _text(501, "renew_channels: not implemented yet")
