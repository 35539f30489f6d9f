"""Start an emulator inside the test process, and build the real Calendar client against it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .app import Emulator
from .control import EmulatorControl
from .quotas import QuotaSettings
from .server import EmulatorHTTPServer


@dataclass(frozen=True)
class RunningEmulator:
    """Addresses of an emulator started by ``running_emulator``; ``app`` is its in-process state."""

    base_url: str
    api_endpoint: str
    token_uri: str
    auth_uri: str  # the consent page (Google's https://accounts.google.com/o/oauth2/v2/auth)
    control: EmulatorControl
    app: Emulator


@contextmanager
def running_emulator(
    enforce_auth: bool = False, host: str = "127.0.0.1", quotas: QuotaSettings | None = None
) -> Iterator[RunningEmulator]:
    """Serve a fresh emulator on a free loopback port in a background thread.

    ``quotas``: limits it starts with (and returns to on reset); default none enforced.
    """
    app = Emulator(enforce_auth=enforce_auth, quotas=quotas)
    server = EmulatorHTTPServer(host, 0, app)
    server.start_background()
    try:
        yield RunningEmulator(
            base_url=server.base_url,
            api_endpoint=server.base_url + "/calendar/v3/",
            token_uri=server.base_url + "/token",
            auth_uri=server.base_url + "/o/oauth2/v2/auth",
            control=EmulatorControl(server.base_url),
            app=app,
        )
    finally:
        server.shutdown()
        server.server_close()
        app.close()


def calendar_service(base_url: str, user: str, credentials: Any = None) -> Any:
    """The real ``googleapiclient`` Calendar v3 service acting as ``user`` against the emulator."""
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    return build(
        "calendar",
        "v3",
        credentials=credentials if credentials is not None else Credentials(token=user),
        static_discovery=True,
        cache_discovery=False,
        client_options={"api_endpoint": base_url.rstrip("/") + "/calendar/v3/"},
    )
