"""The operator CLI as an operator runs it: a subprocess with the stack's environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.local.stack import ROOT
from tests.e2e.conftest import E2E, wait_until

pytestmark = pytest.mark.e2e
USER = "olive@example.com"
REFRESH = "rt-olive-cli-secret"


KEYS = ("CALSYNC_CHANNEL_TOKEN_KEYS", "CALSYNC_CREDENTIAL_KEYS", "CALSYNC_OAUTH_CLIENT_SECRET")


def cli(e2e: E2E, *args: str, stdin: str = "",
        without: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in {**os.environ, **e2e.env}.items() if k not in without}
    done = subprocess.run([sys.executable, "-m", "functions.cli", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_operator_story_through_the_cli(e2e: E2E) -> None:
    api, calendar_id = e2e.new_calendar(USER, events=3)
    e2e.control.register_refresh_token(REFRESH, USER)
    done = cli(e2e, "subscribe", calendar_id, "--owner", USER, "--refresh-token-stdin",
               "--json", stdin=REFRESH + "\n")
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)
    sub_id = created["subscription_id"]
    assert created["credentials_ref"].startswith("oauth:")
    assert created["created"] is True and isinstance(created["queued"], bool)
    wait_until(lambda: len(e2e.feed(sub_id)) == 3, 30, "the initial sync")

    # Reading needs no key at all.
    changes = json.loads(cli(e2e, "changes", sub_id, "--json", without=KEYS).stdout)
    assert [e["kind"] for e in changes["entries"]] == ["created"] * 3
    assert changes["next_cursor"] == 3
    tail = cli(e2e, "changes", sub_id, "--after", "2")
    assert tail.returncode == 0 and "next cursor: 3" in tail.stdout

    status = json.loads(cli(e2e, "status", sub_id, "--json").stdout)["subscriptions"][0]
    assert status["status"] == "active" and status["channel_id"]
    table = cli(e2e, "status", without=KEYS)
    assert table.returncode == 0 and sub_id in table.stdout and "active" in table.stdout
    listing = json.loads(cli(e2e, "list", "--json").stdout)
    assert [s["id"] for s in listing["subscriptions"]] == [sub_id]

    resync = cli(e2e, "resync", sub_id, "--full", "--json", "--timeout", "60")
    assert resync.returncode == 0 and resync.stderr == "", resync.stderr
    assert json.loads(resync.stdout)["change_seq"] == 3  # a full resync of an unchanged calendar

    assert cli(e2e, "pause", sub_id).returncode == 0
    assert json.loads(cli(e2e, "status", sub_id, "--json").stdout)[
        "subscriptions"][0]["status"] == "paused"
    assert cli(e2e, "resume", sub_id).returncode == 0
    renew = json.loads(cli(e2e, "renew", "--json").stdout)
    assert renew["failed"] == 0

    rotated = cli(e2e, "rotate-keys", "--json", without=("CALSYNC_CHANNEL_TOKEN_KEYS",))
    assert rotated.returncode == 0, rotated.stdout
    report = json.loads(rotated.stdout)
    assert sum(report["credential_keys"]["sealed_by"].values()) >= 1
    assert report["credential_keys"]["unopenable"] == []

    # The resume's run done first: the CLI then publishes the deletion message and
    # finishes itself. (A run that still held the subscription's publishing would
    # leave the finish to the worker: the CLI says `deleting`, and it completes.)
    e2e.wait_quiet(sub_id)
    gone = cli(e2e, "unsubscribe", sub_id, "--json")
    assert gone.returncode == 0, gone.stderr
    answer = json.loads(gone.stdout)
    if "deleted_documents" in answer:
        assert answer["deleted_documents"] > 3
    else:
        assert answer.get("status") in ("deleting", None), answer
        wait_until(lambda: cli(e2e, "status", sub_id).returncode == 3, 60,
                   "the worker to finish the deletion")
    outputs = [done, tail, table, resync, rotated, gone]
    assert not any(REFRESH in o.stdout + o.stderr for o in outputs)


def test_bad_arguments_and_unknown_subscriptions_have_trustworthy_exit_codes(e2e: E2E) -> None:
    missing = cli(e2e, "status", "no-such-subscription")
    assert missing.returncode == 3 and "no subscription" in missing.stderr
    for command in ("unsubscribe", "changes", "pause", "resume", "resync"):
        assert cli(e2e, command, "no-such-subscription").returncode == 3, command
    as_json = cli(e2e, "changes", "no-such-subscription", "--json", without=KEYS)
    assert as_json.returncode == 3 and as_json.stderr == ""
    assert json.loads(as_json.stdout) == {"error": {
        "code": "not_found", "message": "no subscription 'no-such-subscription'",
        "details": {"subscription_id": "no-such-subscription"}}}
    unset = cli(e2e, "subscribe", "cal", "--owner", USER, "--json",
                without=("CALSYNC_TASKS_QUEUE",))
    assert unset.returncode == 1
    assert json.loads(unset.stdout)["error"]["code"] == "failed_precondition"
    assert "CALSYNC_TASKS_QUEUE is not set" in unset.stdout
    bad = cli(e2e, "changes", "x", "--limit", "0")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert cli(e2e, "subscribe", "cal").returncode == 2  # --owner is required
    assert cli(e2e, "frobnicate").returncode == 2


def no_credentials(e2e: E2E, home: Path, *names: str) -> dict[str, str]:
    """An environment with no Google credentials of any kind: no ADC file (HOME and the
    gcloud config point at an empty directory), no GOOGLE_APPLICATION_CREDENTIALS, no
    metadata server (only loopback port 9, which refuses), no emulator but Firestore's;
    only GOOGLE_CLOUD_PROJECT, FIRESTORE_EMULATOR_HOST and the stack variables `names`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CALSYNC_", "FIRESTORE_", "CLOUD_TASKS_", "GOOGLE_",
                                "CLOUDSDK_", "CALENDAR_", "PUBSUB_"))}
    env.update({"HOME": str(home), "CLOUDSDK_CONFIG": str(home / "gcloud"),
                "GCE_METADATA_HOST": "127.0.0.1:9", "GCE_METADATA_IP": "127.0.0.1:9",
                "GOOGLE_CLOUD_PROJECT": e2e.env["GOOGLE_CLOUD_PROJECT"],
                "FIRESTORE_EMULATOR_HOST": e2e.env["FIRESTORE_EMULATOR_HOST"]})
    env.update({name: e2e.env[name] for name in names})
    return env


def bare(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "functions.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def test_reading_needs_no_google_credentials_against_the_emulator(e2e: E2E,
                                                                  tmp_path: Path) -> None:
    """status, list and changes read Firestore only: with the project and the emulator
    host alone they work; every command that writes still names the missing credentials."""
    _, calendar_id = e2e.new_calendar(USER, events=2)
    sub_id = e2e.subscribe(calendar_id, USER).id
    wait_until(lambda: len(e2e.feed(sub_id)) == 2, 30, "the initial sync")
    env = no_credentials(e2e, tmp_path)
    for args, shown in ((("status",), sub_id), (("status", sub_id), sub_id),
                        (("list",), sub_id), (("changes", sub_id), "next cursor: 2")):
        done = bare(env, *args)
        assert done.returncode == 0, (args, done.stderr)
        assert shown in done.stdout and done.stderr == "", (args, done.stdout)
    status = json.loads(bare(env, "status", sub_id, "--json").stdout)["subscriptions"][0]
    full = json.loads(cli(e2e, "status", sub_id, "--json").stdout)["subscriptions"][0]
    assert set(status) == set(full)  # the same report as with every setting
    assert (status["id"], status["status"], status["channel_id"], status["change_seq"]) == (
        full["id"], full["status"], full["channel_id"], 2)
    listed = json.loads(bare(env, "list", "--json").stdout)["subscriptions"]
    assert listed == [{"id": sub_id, "calendar_id": calendar_id, "owner": USER,
                       "status": "active"}]
    assert json.loads(bare(env, "changes", sub_id, "--json").stdout)["next_cursor"] == 2
    assert bare(env, "status", "no-such-subscription").returncode == 3

    queue = no_credentials(e2e, tmp_path, "CALSYNC_REGION", "CALSYNC_TASKS_QUEUE",
                           "CALSYNC_WORKER_URL")
    for args in (("pause", sub_id), ("resume", sub_id), ("resync", sub_id),
                 ("unsubscribe", sub_id), ("subscribe", "cal@x.io", "--owner", USER)):
        done = bare(queue, *args)
        assert done.returncode == 1 and done.stdout == "", (args, done.stdout)
        assert done.stderr.startswith("error: no Google credentials found"), (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
    as_json = bare(queue, "pause", sub_id, "--json")
    assert json.loads(as_json.stdout)["error"]["details"] == {"reason": "credentials"}
    assert bare(env, "status", sub_id).returncode == 0  # nothing was changed on the way
    assert json.loads(bare(env, "list", "--json").stdout)["subscriptions"] == listed
