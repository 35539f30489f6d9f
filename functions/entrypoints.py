"""HTTP handlers behind main.py: parse, call one service, map errors to status.

Until their issues land, the handlers answer 501 with a one-line reason.
"""

from __future__ import annotations

from flask import Request, Response


def _text(status: int, reason: str) -> Response:
    return Response(reason + "\n", status=status, mimetype="text/plain")


def webhook(request: Request) -> Response:
    return _text(501, "webhook: not implemented yet")


def sync_worker(request: Request) -> Response:
    return _text(501, "sync_worker: not implemented yet")


def renew_channels(request: Request) -> Response:
    return _text(501, "renew_channels: not implemented yet")
