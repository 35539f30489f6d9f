from __future__ import annotations

import base64

import pytest

from functions.config import ALL_FUNCTIONS, VARIABLES, WEBHOOK, ConfigError, Settings

KEY = base64.b64encode(b"k" * 32).decode()
BASE = {
    "GOOGLE_CLOUD_PROJECT": "proj",
    "CALSYNC_REGION": "europe-west1",
    "CALSYNC_TASKS_QUEUE": "calsync-sync",
    "CALSYNC_WORKER_URL": "https://worker.example/",
    "CALSYNC_WEBHOOK_URL": "https://hook.example/",
    "CALSYNC_CHANNEL_TOKEN_KEYS": f"k1:{KEY}",
}


def test_complete_environment_parses_with_defaults() -> None:
    settings = Settings.from_env(BASE)
    assert settings.project == "proj"
    assert settings.min_sync_interval == 2.0
    assert settings.channel_ttl == 604800
    assert settings.channel_token_keys == {"k1": b"k" * 32}
    assert settings.queue_path == "projects/proj/locations/europe-west1/queues/calsync-sync"


@pytest.mark.parametrize("missing", ["GOOGLE_CLOUD_PROJECT", "CALSYNC_TASKS_QUEUE",
                                     "CALSYNC_CHANNEL_TOKEN_KEYS", "CALSYNC_WEBHOOK_URL"])
def test_missing_variable_is_named(missing: str) -> None:
    env = {k: v for k, v in BASE.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        Settings.from_env(env)


@pytest.mark.parametrize(("name", "value", "reason"), [
    ("CALSYNC_MIN_SYNC_INTERVAL_SECONDS", "soon", "must be a number"),
    ("CALSYNC_MIN_SYNC_INTERVAL_SECONDS", "-1", "positive"),
    ("CALSYNC_CHANNEL_TTL_SECONDS", "1.5", "whole number"),
    ("CALSYNC_WORKER_URL", "worker", "URL"),
    ("CALSYNC_CHANNEL_TOKEN_KEYS", "nokey", "id:base64key"),
    ("CALSYNC_CHANNEL_TOKEN_KEYS", "k1:!!!", "base64"),
    ("CALSYNC_CHANNEL_TOKEN_KEYS", "k1:" + base64.b64encode(b"short").decode(), "16 bytes"),
    ("CLOUD_TASKS_EMULATOR_HOST", "localhost", "host:port"),
    ("CALSYNC_JSON_LOGS", "maybe", "true or false"),
])
def test_malformed_variable_is_named_with_reason(name: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, name: value})
    assert name in str(info.value)
    assert reason in str(info.value)


def test_secret_values_never_appear_in_errors_or_repr() -> None:
    secret = "k1:" + base64.b64encode(b"s3cr3t-value-xyz").decode() + ",bad"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**BASE, "CALSYNC_CHANNEL_TOKEN_KEYS": secret})
    assert "s3cr3t" not in str(info.value) and secret not in str(info.value)
    settings = Settings.from_env(BASE)
    assert KEY not in repr(settings) and "kkkk" not in repr(settings)


def test_function_scope_only_requires_what_it_reads() -> None:
    env = {k: v for k, v in BASE.items() if k != "CALSYNC_WEBHOOK_URL"}
    assert Settings.from_env(env, function=WEBHOOK).webhook_url == ""
    with pytest.raises(ConfigError, match="CALSYNC_WEBHOOK_URL"):
        Settings.from_env(env, function="renew_channels")


def test_variable_table_is_consistent() -> None:
    names = [v.name for v in VARIABLES]
    assert len(names) == len(set(names))
    fields = set(Settings.__dataclass_fields__)
    for var in VARIABLES:
        assert var.attr in fields, var.name
        assert var.used_by and set(var.used_by) <= set(ALL_FUNCTIONS), var.name
        # Every default must itself be a valid value (or empty for optional ones).
        if var.default is not None and (var.default or var.required):
            var.parse(var.default)


def test_local_queue_retries_match_terraform() -> None:
    import re
    from pathlib import Path

    from infra.local.stack import FALLBACK_MAX_ATTEMPTS, queue_max_attempts

    text = (Path(__file__).resolve().parents[2] / "terraform/variables.tf").read_text()
    block = re.search(r'variable "queue_max_attempts" \{(.*?)\n\}', text, re.S)
    assert block, "terraform/variables.tf lost queue_max_attempts"
    default = int(re.search(r"default\s*=\s*(\d+)", block.group(1)).group(1))  # type: ignore[union-attr]
    assert queue_max_attempts() == default
    broken = Path(__file__).parent / "no-such-variables.tf"
    assert queue_max_attempts(broken) == FALLBACK_MAX_ATTEMPTS


def test_queue_attempts_are_read_from_terraform_not_assumed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from infra.local.stack import queue_max_attempts

    variables = tmp_path / "variables.tf"
    variables.write_text('variable "queue_max_attempts" {\n  type = number\n  default = 7\n}\n')
    assert queue_max_attempts(variables) == 7


def test_terraform_defaults_match_the_settings_defaults() -> None:
    """A deployment with Terraform's defaults behaves like config.py's defaults."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "terraform/variables.tf").read_text()
    compared = 0
    for var in VARIABLES:
        name = var.name.lower().removeprefix("calsync_")
        block = re.search(rf'variable "{name}" \{{(.*?)\n\}}', text, re.S)
        if block is None or var.default in (None, ""):
            continue
        default = re.search(r"^\s*default\s*=\s*(.+)$", block.group(1), re.M)
        assert default, f"terraform variable {name} has no default"
        assert var.parse(default.group(1).strip().strip('"')) == var.parse(var.default), name
        compared += 1
    assert compared >= 7  # the tunables: intervals, windows, TTL, lease, page size


def test_renewal_fan_out_settings() -> None:
    """Sharded renewal (issue 19, item 4): the shard count fits the stored shard space,
    a fan-out needs the renewer's URL (its tasks' target), and the renewer's tasks go
    to their own queue when one is named."""
    with pytest.raises(ConfigError, match="CALSYNC_RENEWAL_SHARDS='33' must be between 1 and 32"):
        Settings.from_env({**BASE, "CALSYNC_RENEWAL_SHARDS": "33"})
    with pytest.raises(ConfigError, match="CALSYNC_RENEWAL_SHARDS=16 needs CALSYNC_RENEWER_URL"):
        Settings.from_env({**BASE, "CALSYNC_RENEWAL_SHARDS": "16"})
    settings = Settings.from_env({**BASE, "CALSYNC_RENEWAL_SHARDS": "16",
                                  "CALSYNC_RENEWER_URL": "https://renewer.example/",
                                  "CALSYNC_RENEWER_QUEUE": "calsync-renewer"})
    assert settings.renewal_shards == 16
    assert settings.renewer_queue_path.endswith("/queues/calsync-renewer")
    assert Settings.from_env(BASE).renewer_queue_path == Settings.from_env(BASE).queue_path
    # The webhook reads neither: its settings never fail on the renewer's.
    assert Settings.from_env({**BASE, "CALSYNC_RENEWAL_SHARDS": "16"}, function=WEBHOOK)


def test_the_run_budget_follows_a_shorter_dispatch_deadline() -> None:
    """Unset, the run budget is five sixths of the deadline, so shortening the deadline
    alone is a valid configuration; set, it must be shorter than the deadline."""
    short = Settings.from_env({**BASE, "CALSYNC_DISPATCH_DEADLINE_SECONDS": "600"})
    assert short.sync_run_budget == 500
    assert Settings.from_env(BASE).sync_run_budget == 1500
    chosen = {**BASE, "CALSYNC_DISPATCH_DEADLINE_SECONDS": "600",
              "CALSYNC_RUN_BUDGET_SECONDS": "300"}
    assert Settings.from_env(chosen).sync_run_budget == 300
    with pytest.raises(ConfigError, match="CALSYNC_RUN_BUDGET_SECONDS=700 must be shorter"):
        Settings.from_env({**chosen, "CALSYNC_RUN_BUDGET_SECONDS": "700"})
