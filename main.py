"""Entry points for functions-framework: webhook, sync_worker, renew_channels, api.

Thin on purpose: each hands the Flask request to its handler in `functions`.
"""

from __future__ import annotations

import functions_framework
from flask import Request, Response

from functions import entrypoints


@functions_framework.http
def webhook(request: Request) -> Response:
    return entrypoints.webhook(request)


@functions_framework.http
def sync_worker(request: Request) -> Response:
    return entrypoints.sync_worker(request)


@functions_framework.http
def renew_channels(request: Request) -> Response:
    return entrypoints.renew_channels(request)


@functions_framework.http
def api(request: Request) -> Response:
    return entrypoints.api(request)
