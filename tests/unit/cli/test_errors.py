"""Every failure the CLI can meet: one message (JSON under --json), a documented exit
status, never a traceback."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import pytest

from functions.cli import main as cli
from functions.cli.output import CODES, Output
from functions.errors import (
    InvalidTransition,
    QueueUnavailable,
    SealError,
    StoreUnavailable,
    SubscriptionNotFound,
)
from functions.model import Subscription
from tests.unit.cli.conftest import Fakes, TtyStream, run


class Raising:
    """A service whose every method raises `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> Any:
            raise self.error

        return method


def _assert_error(result: Any, status: int, code: str, *needles: str) -> dict[str, Any]:
    assert result.status == status, (result.out, result.err)
    assert result.err == ""
    error = result.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code
    assert code in CODES and isinstance(error["details"], dict)
    for needle in needles:
        assert needle in error["message"], error
    return dict(error)


@pytest.mark.parametrize("command", [
    ["status", "nope"], ["pause", "nope"], ["resume", "nope"], ["unsubscribe", "nope"],
])
def test_an_unknown_subscription_exits_3_as_text_and_as_json(
    fakes: Fakes, command: list[str]
) -> None:
    fakes.service = Raising(SubscriptionNotFound("nope"))
    text = run(*command)
    assert text.status == 3 and text.out == ""
    assert text.err == "error: no subscription 'nope'\n"
    error = _assert_error(run(*command, "--json"), 3, "not_found", "nope")
    assert error["details"] == {"subscription_id": "nope"}


class Store:
    def __init__(self, subscription: Subscription | None = None) -> None:
        self.subscription = subscription
        self.states = [{"synced_gen": 0, "lease_until": 1, "change_seq": 1},
                       {"synced_gen": 1, "lease_until": None, "change_seq": 4}]

    def get_subscription(self, sub_id: str) -> Subscription | None:
        return self.subscription

    def get_writer_state(self, sub_id: str) -> dict[str, Any]:
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def changes(self, sub_id: str, query: Any) -> Any:

        if self.subscription is None:
            raise SubscriptionNotFound(sub_id)
        raise AssertionError("not needed by these tests")


@pytest.mark.parametrize("command", [["changes", "nope"], ["resync", "nope"]])
def test_changes_and_resync_of_an_unknown_subscription_exit_3(
    fakes: Fakes, command: list[str]
) -> None:
    from functions.errors import SubscriptionNotFound

    # `changes` looks the subscription up itself; `resync` asks the service.
    fakes.store, fakes.service = Store(None), Raising(SubscriptionNotFound("nope"))
    assert run(*command).status == 3
    _assert_error(run(*command, "--json"), 3, "not_found")


def test_changes_needs_only_the_project(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CALSYNC_REGION", "CALSYNC_TASKS_QUEUE", "CALSYNC_WORKER_URL"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("CALSYNC_CHANNEL_TOKEN_KEYS", "garbage")  # not read at all
    fakes.store = Store(None)
    assert run("changes", "nope").status == 3  # got as far as the lookup
    [settings] = fakes.settings_seen
    assert settings.project == "calsync-cli" and settings.channel_token_keys == {}


def test_a_missing_setting_names_only_what_the_command_reads(
    fakes: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALSYNC_TASKS_QUEUE")
    fakes.service = Raising(AssertionError("not called"))
    error = _assert_error(run("resume", "s1", "--json"), 1, "failed_precondition",
                          "CALSYNC_TASKS_QUEUE is not set")
    assert "CHANNEL_TOKEN" not in error["message"] and "CREDENTIAL" not in error["message"]
    text = run("resume", "s1")
    assert text.status == 1 and text.err.startswith("error: invalid configuration")
    assert text.err.count("\n") == 1


def test_a_malformed_secret_is_named_never_shown(fakes: Fakes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALSYNC_CREDENTIAL_KEYS", "k1:c2hvcnQtc2VjcmV0")  # too short
    error = _assert_error(run("rotate-keys", "--json"), 1, "failed_precondition",
                          "CALSYNC_CREDENTIAL_KEYS=<secret>")
    assert "c2hvcnQtc2VjcmV0" not in error["message"]


@pytest.mark.parametrize(("error", "status", "code", "needle"), [
    (InvalidTransition("subscription s1 is deleting", "deleting"), 1, "failed_precondition",
     "is deleting"),
    (SealError("sealed under key 'k0', which is no longer configured"), 1,
     "failed_precondition", "no longer configured"),
    (StoreUnavailable("firestore unavailable: 503"), 1, "unavailable", "retry later"),
    (QueueUnavailable("could not queue sync task"), 1, "unavailable", "could not queue"),
    (RuntimeError("a bug"), 1, "internal", "unexpected RuntimeError: a bug"),
])
def test_service_failures_are_one_message_and_exit_1(
    fakes: Fakes, error: Exception, status: int, code: str, needle: str
) -> None:
    fakes.service = Raising(error)
    text = run("resume", "s1")
    assert text.status == status and text.out == "" and needle in text.err
    assert text.err.count("\n") == 1
    details = _assert_error(run("resume", "s1", "--json"), status, code, needle)["details"]
    if isinstance(error, InvalidTransition):
        assert details == {"status": "deleting"}


def test_missing_application_default_credentials_is_a_hint_not_a_traceback(
    fakes: Fakes,
) -> None:
    from google.auth.exceptions import DefaultCredentialsError

    fakes.service = Raising(DefaultCredentialsError("Could not automatically determine"))
    error = _assert_error(run("list", "--json"), 1, "failed_precondition",
                          "gcloud auth application-default login")
    assert error["details"] == {"reason": "credentials"}


def test_ctrl_c_exits_130(fakes: Fakes) -> None:
    fakes.service = Raising(KeyboardInterrupt())
    result = run("status")
    assert result.status == 130 and result.err == "error: interrupted\n"
    _assert_error(run("status", "--json"), 130, "unavailable", "interrupted")


@pytest.mark.parametrize("argv", [
    ["changes", "x", "--limit", "0"], ["changes", "x", "--after", "-1"],
    ["changes", "x", "--limit", "many"], ["subscribe", "cal"], ["frobnicate"],
    ["subscribe", "cal", "--owner", "a@b", "--credentials", "magic"],
    ["subscribe", "cal", "--owner", "a@b", "--label", "Bad Key=x"],
    ["resync", "s1", "--timeout", "-5"], [],
])
def test_bad_arguments_exit_2_with_one_line(fakes: Fakes, argv: list[str]) -> None:
    fakes.service = Raising(AssertionError("not called"))
    text = run(*argv)
    assert text.status == 2 and text.out == "" and text.err.count("\n") == 1, text.err
    assert text.err.startswith("error: ")
    _assert_error(run(*argv, "--json"), 2, "invalid_argument")


def test_help_speaks_to_users_and_lists_the_exit_codes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subparsers.choices) >= {"subscribe", "unsubscribe", "pause", "resume", "list",
                                       "status", "resync", "renew", "changes", "rotate-keys"}
    for name, command in subparsers.choices.items():
        for action in command._actions:
            assert action.help and action.help != argparse.SUPPRESS, (name, action.dest)
        assert command.description and "exit status" in (command.epilog or "")
    for argv in (["--help"], *([name, "--help"] for name in subparsers.choices)):
        assert cli.main(list(argv)) == 0
        shown = capsys.readouterr().out
        assert "exit status" in shown and "130" in shown and "not_found" in shown
        assert "_register" not in shown and "add one" not in shown


def test_progress_goes_to_a_terminal_stderr_only(fakes: Fakes,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.sleep", lambda _: None)

    from functions.lifecycle.subscriptions import Resync

    class Service:
        def resync(self, sub_id: str, full: bool = False) -> Resync:
            return Resync(generation=1)

    sub = Subscription("s1", "cal", "o@example.com", requested_gen=1)
    fakes.service = Service()
    fakes.store = Store(sub)
    piped = run("resync", "s1")
    assert piped.status == 0 and piped.err == ""
    assert piped.out == "synced s1: feed at cursor 4\n"
    fakes.store = Store(sub)
    terminal = TtyStream()
    shown = run("resync", "s1", err=terminal)
    assert shown.status == 0 and "running: feed at cursor 1" in terminal.getvalue()
    assert shown.out == "synced s1: feed at cursor 4\n"
    fakes.store = Store(sub)
    quiet = TtyStream()
    assert run("resync", "s1", "--json", err=quiet).json()["change_seq"] == 4
    assert quiet.getvalue() == ""


def test_resync_of_a_paused_subscription_is_refused(fakes: Fakes) -> None:
    from functions.errors import InvalidTransition

    fakes.service = Raising(InvalidTransition(
        "subscription s1 is paused: only an active one syncs (resume it first)", "paused"))
    fakes.store = Store(Subscription("s1", "cal", "o", status="paused"))
    _assert_error(run("resync", "s1", "--json"), 1, "failed_precondition", "resume it first")


def test_output_progress_never_on_a_pipe() -> None:
    pipe = TtyStream()
    pipe.isatty = lambda: False  # type: ignore[method-assign]
    Output(False, err=pipe).progress("x")
    assert pipe.getvalue() == ""


@dataclass
class Result:
    subscription: Subscription
    created: bool
    queued: bool


class Subscribing:
    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[Any, ...]] = []

    def subscribe(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.answer


def test_subscribe_reports_created_and_queued(fakes: Fakes) -> None:
    sub = Subscription("s1", "cal@example.com", "o@example.com", credentials_ref="dwd")
    fakes.service = Subscribing(Result(sub, created=True, queued=True))
    made = run("subscribe", "cal@example.com", "--owner", "o@example.com", "--json",
               "--label", "team=ops")
    assert made.status == 0
    assert made.json() == {"subscription_id": "s1", "created": True, "queued": True,
                           "credentials_ref": "dwd"}
    assert fakes.service.calls == [(("cal@example.com", "o@example.com", "dwd"),
                                    {"labels": {"team": "ops"}})]
    fakes.service = Subscribing(Result(sub, created=False, queued=False))
    again = run("subscribe", "cal@example.com", "--owner", "o@example.com")
    assert again.status == 0 and again.out.startswith("already subscribed: s1")
    assert "renewer's sweep queues it within a few minutes" in again.out


def test_service_log_lines_never_reach_stdout(fakes: Fakes,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from functions import logs

    class Logging:
        def pause(self, sub_id: str) -> None:
            logs.log("INFO", "renewer run", renewed=0)
            logs.log("WARNING", "channel renewal failed", subscription=sub_id)

    fakes.service = Logging()
    logs.reset()
    result = run("pause", "s1", "--json")
    assert result.status == 0 and result.err == ""
    assert result.json() == {"subscription_id": "s1", "status": "paused"}
    captured = capsys.readouterr()
    [warning] = [line for line in captured.err.splitlines() if line]
    assert '"message":"channel renewal failed"' in warning and captured.out == ""
    logs.log("INFO", "after the command")  # the functions' set-up is back: stdout
    assert "after the command" in capsys.readouterr().out
    logs.reset()


class Vault:
    stored: list[str] = []
    deleted: list[str] = []

    def __init__(self, db: Any, keyring: Any) -> None:
        assert keyring  # sealing needs CALSYNC_CREDENTIAL_KEYS

    def store_refresh_token(self, token: str) -> str:
        Vault.stored.append(token)
        return f"oauth:new{len(Vault.stored)}"

    def delete(self, credential_id: str) -> None:
        Vault.deleted.append(credential_id)


@pytest.fixture
def vault(fakes: Fakes, monkeypatch: pytest.MonkeyPatch) -> type[Vault]:
    import io

    from functions import app

    Vault.stored, Vault.deleted = [], []
    monkeypatch.setattr(app, "credential_vault",
                        lambda settings: Vault(object(), settings.credential_keys))
    monkeypatch.setattr("sys.stdin", io.StringIO("rt-cli-unit-secret\n"))
    monkeypatch.setenv("CALSYNC_CREDENTIAL_KEYS", "k1:" + "a" * 44)
    return Vault


def test_a_refresh_token_for_an_existing_subscription_is_not_kept(
    fakes: Fakes, vault: type[Vault]
) -> None:
    existing = Subscription("s1", "cal", "o@example.com", credentials_ref="oauth:old")
    fakes.service = Subscribing(Result(existing, created=False, queued=False))
    done = run("subscribe", "cal", "--owner", "o@example.com", "--refresh-token-stdin",
               "--json")
    assert done.status == 0 and "rt-cli-unit-secret" not in done.out
    assert done.json()["credentials_ref"] == "oauth:old" and done.json()["created"] is False
    assert vault.stored == ["rt-cli-unit-secret"] and vault.deleted == ["new1"]


def test_a_refused_subscribe_keeps_no_refresh_token(fakes: Fakes, vault: type[Vault]) -> None:
    fakes.service = Raising(InvalidTransition("subscription s1 is deleting", "deleting"))
    done = run("subscribe", "cal", "--owner", "o@example.com", "--refresh-token-stdin")
    assert done.status == 1 and "is deleting" in done.err
    assert vault.deleted == ["new1"]


def test_refresh_token_stdin_needs_the_credential_keys(
    fakes: Fakes, vault: type[Vault], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CALSYNC_CREDENTIAL_KEYS")
    fakes.service = Raising(AssertionError("not called"))
    done = run("subscribe", "cal", "--owner", "o@example.com", "--refresh-token-stdin")
    assert done.status == 1 and "CALSYNC_CREDENTIAL_KEYS is not set" in done.err
    assert vault.stored == []
