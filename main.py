"""Entry points for functions-framework: webhook, sync_worker, renew_channels, api.

Thin on purpose: each hands the Flask request to its handler in `functions`.
"""

from __future__ import annotations

import flask
import functions_framework
from flask import Request, Response

from functions import entrypoints

# functions-framework executes this module inside its app's context and adds its
# catch-all route afterwards: let that route take a path with a newline in it, so
# that our functions, not the framework's HTML 404, answer every request.
if flask.has_app_context():
    entrypoints.route_every_path(flask.current_app)


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
