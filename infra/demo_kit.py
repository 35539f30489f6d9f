"""What every chapter of `make demo` shares: the story's voice, the app's HTTP
client, the consent redirect, and the checks that make a chapter fail loudly."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from infra.calendar_emulator.testing import calendar_service as emulator_calendar_service

REDIRECT = "http://127.0.0.1:8765/oauth/callback"  # the app's; nothing listens there


class DemoFailed(Exception):
    """The system did not do what the story says: one line, why."""


class Story:
    def __init__(self) -> None:
        self.chapter = 0

    def title(self, text: str) -> None:
        self.chapter += 1
        print(f"\n== {self.chapter}. {text}", flush=True)

    @staticmethod
    def say(text: str) -> None:
        print(f"   {text}", flush=True)


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    """`check()`'s first truthy value within `timeout` seconds, else None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.25)
    return None


def expect(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """`check()`'s first truthy value; DemoFailed naming `what` if none came in time."""
    value = wait_for(check, timeout)
    if not value:
        raise DemoFailed(f"after {timeout:.0f}s, still not: {what}")
    return value


def calendar_service(env: dict[str, str], user: str) -> Any:
    """The real client against the emulator; the bearer token string is the user id."""
    base_url = env["CALENDAR_API_ENDPOINT"].split("/calendar/v3", 1)[0]
    return emulator_calendar_service(base_url, user)


class Api:
    """The consumer application's side: JSON over HTTP to the `api` function."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base_url + path, method=method, data=data,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return int(response.status), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return int(err.code), json.loads(err.read() or b"null")

    def ok(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        """The answer's body; DemoFailed when the status is not `status`."""
        got, answer = self.call(method, path, body)
        if got != status:
            raise DemoFailed(f"{method} {path} answered {got} (expected {status}): "
                             f"{json.dumps(answer)[:300]}")
        return answer


def consent_code(story: Story, api: Api, user: str) -> str:
    """The consent redirect the app sends `user` through; the code it comes back with."""
    status, config = api.call("GET", "/v1/oauth/config")
    query = urlencode({"client_id": config["client_id"], "redirect_uri": REDIRECT,
                       "response_type": "code", "scope": " ".join(config["scopes"]),
                       "access_type": config["access_type"], "prompt": config["prompt"],
                       "state": "demo", "login_hint": user})
    story.say(f"GET /v1/oauth/config -> {status}: client {config['client_id']}, "
              f"scopes {', '.join(s.rsplit('/', 1)[-1] for s in config['scopes'])}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        opener.open(f"{config['auth_uri']}?{query}", timeout=30)
        raise DemoFailed("the consent page did not redirect")
    except urllib.error.HTTPError as err:
        location = err.headers["Location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    story.say(f"{user} consents; the browser comes back to {REDIRECT} with a code")
    return str(code)


def post_json(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, method="POST", data=b"{}",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))
