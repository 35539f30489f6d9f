"""The example consumer fails closed (issue 18, item 7): without the push
subscription's identity (its service account and the audience) it refuses to
start, unless the loudly named insecure flag is set for the local stack; and a
Google-signed token of another service account with the right audience is
refused 403. Tokens are minted locally and verified against a key set served
on loopback (DESIGN.md, "What the emulators do not show")."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from examples import consumer as example
from infra.local.processes import free_port

from .conftest import ROOT, FakeFeed, KeySet
from .test_consumer import AUDIENCE, PUSH_SA, entry, envelope, post

INSECURE = "CONSUMER_INSECURE_NO_AUTH"


def base_env(tmp_path: Path, api_url: str = "http://127.0.0.1:9/") -> dict[str, str]:
    return {"CALSYNC_API_URL": api_url, "CONSUMER_STATE_PATH": str(tmp_path / "state.sqlite3")}


def refusal(environ: dict[str, str]) -> str:
    with pytest.raises(example.StartRefused) as refused:
        example.from_env(environ, out=lambda line: None)
    return str(refused.value)


def test_refuses_to_start_without_the_push_identity(tmp_path: Path) -> None:
    reason = refusal(base_env(tmp_path))
    assert "CONSUMER_PUSH_SA" in reason and "CONSUMER_AUDIENCE" in reason and INSECURE in reason
    reason = refusal({**base_env(tmp_path), "CONSUMER_AUDIENCE": AUDIENCE})
    assert "CONSUMER_PUSH_SA" in reason and "CONSUMER_AUDIENCE" not in reason
    reason = refusal({**base_env(tmp_path), "CONSUMER_PUSH_SA": PUSH_SA})
    assert "CONSUMER_AUDIENCE" in reason and "CONSUMER_PUSH_SA" not in reason
    # The old switch does not turn verification off any more.
    assert "CONSUMER_PUSH_SA" in refusal({**base_env(tmp_path), "CONSUMER_MODE": "local"})
    # A flag that is not clearly on is a typo, not a yes.
    assert INSECURE in refusal({**base_env(tmp_path), INSECURE: "ture"})
    # Where the position is kept must be said too (a restart must not skip gaps).
    env = {**base_env(tmp_path), "CONSUMER_AUDIENCE": AUDIENCE, "CONSUMER_PUSH_SA": PUSH_SA}
    del env["CONSUMER_STATE_PATH"]
    assert "CONSUMER_STATE_PATH" in refusal(env)
    with pytest.raises(ValueError, match="service account"):
        example.PushIdentity(AUDIENCE, "")
    with pytest.raises(ValueError, match="audience"):
        example.PushIdentity("", PUSH_SA)


def run_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("CONSUMER_", "CALSYNC_"))}
    return subprocess.run([sys.executable, "-m", "examples.consumer", *args],
                          cwd=ROOT, env={**clean, **env}, capture_output=True, text=True,
                          timeout=60)


def test_the_command_refuses_to_start_without_the_push_identity(tmp_path: Path) -> None:
    port = str(free_port())
    done = run_command(base_env(tmp_path), "--port", port)
    assert done.returncode == 2
    assert "refusing to start" in done.stderr and "CONSUMER_PUSH_SA" in done.stderr
    # The insecure flag is for the local stack: it never listens beyond loopback.
    done = run_command({**base_env(tmp_path), INSECURE: "1"}, "--host", "0.0.0.0",
                       "--port", port)
    assert done.returncode == 2 and "loopback" in done.stderr


def test_the_default_refuses_a_token_of_another_service_account(
        serve: Callable[[Any], str], tmp_path: Path) -> None:
    keys = KeySet()
    feed = FakeFeed()
    env = {**base_env(tmp_path, serve(feed)), "CONSUMER_AUDIENCE": AUDIENCE,
           "CONSUMER_CERTS_URL": serve(keys.certs)}
    # Any service account can mint a Google-signed token for any audience: the
    # audience alone proves nothing, so the default is to refuse to start.
    assert "CONSUMER_PUSH_SA" in refusal(env)
    lines: list[str] = []
    url = serve(example.from_env({**env, "CONSUMER_PUSH_SA": PUSH_SA}, out=lines.append))
    feed.entries["s"] = [entry(1)]
    body = envelope(entry(1), sub_id="s")
    other = keys.token(aud=AUDIENCE, email="attacker@evil-project.iam.gserviceaccount.com")
    assert post(url, body, token=other) == (403, "token is not the push service account's\n")
    unverified = keys.token(aud=AUDIENCE, email_verified=False)
    assert post(url, body, token=unverified)[0] == 403
    assert post(url, body)[0] == 401
    assert lines == []
    assert post(url, body, token=keys.token(aud=AUDIENCE))[0] == 204
    assert lines == [
        "subscription s, seq 1, updated: summary 'Kick-off' → 'Kick-off (all hands)'"]


def test_the_insecure_flag_accepts_unauthenticated_pushes_and_says_so(
        serve: Callable[[Any], str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    feed = FakeFeed()
    lines: list[str] = []
    consumer = example.from_env({**base_env(tmp_path, serve(feed)), INSECURE: "1"},
                                out=lines.append)
    assert "INSECURE" in capsys.readouterr().err
    url = serve(consumer)
    assert post(url, envelope(entry(1), sub_id="s"))[0] == 204
    assert len(lines) == 1
