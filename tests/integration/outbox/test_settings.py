"""The outbox's settings (functions/config.py) and how app.py wires them."""

from __future__ import annotations

import pytest

from functions.config import RENEWER, WORKER, ConfigError, Settings

BASE = {"GOOGLE_CLOUD_PROJECT": "p", "CALSYNC_REGION": "r", "CALSYNC_TASKS_QUEUE": "q",
        "CALSYNC_WORKER_URL": "http://127.0.0.1:1/", "CALSYNC_WEBHOOK_URL": "http://127.0.0.1:2/",
        "CALSYNC_CHANNEL_TOKEN_KEYS": "k:" + "a" * 24}


def test_no_topic_means_no_outbox_and_defaults_apply() -> None:
    config = Settings.from_env(BASE, function=WORKER)
    assert config.pubsub_topic == "" and config.publish_timeout == 10.0
    assert Settings.from_env(BASE, function=RENEWER).outbox_sweep_after == 60


def test_topic_and_timeouts_are_read() -> None:
    config = Settings.from_env({**BASE, "CALSYNC_PUBSUB_TOPIC": "calsync-changes",
                                "CALSYNC_PUBLISH_TIMEOUT_SECONDS": "2.5",
                                "CALSYNC_OUTBOX_SWEEP_SECONDS": "30"})
    assert (config.pubsub_topic, config.publish_timeout, config.outbox_sweep_after) == (
        "calsync-changes", 2.5, 30)


@pytest.mark.parametrize("topic", ["ab", "1topic", "goog-topic", "has space", "a/b/c"])
def test_a_malformed_topic_id_is_named(topic: str) -> None:
    with pytest.raises(ConfigError, match="CALSYNC_PUBSUB_TOPIC"):
        Settings.from_env({**BASE, "CALSYNC_PUBSUB_TOPIC": topic}, function=WORKER)


def test_app_wires_the_outbox_only_with_a_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import app
    from functions.delivery.outbox import Outbox

    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")  # neither is contacted here
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    app.reset()
    try:
        assert app.outbox(Settings.from_env(BASE, function=WORKER)) is None
        app.reset()
        config = Settings.from_env({**BASE, "CALSYNC_PUBSUB_TOPIC": "calsync-changes"},
                                   function=WORKER)
        built = app.outbox(config)
        assert isinstance(built, Outbox) and built.publisher.topic_path == (
            "projects/p/topics/calsync-changes")
        assert type(app.store(config)).__name__ == "OutboxFirestoreStore"
    finally:
        app.reset()


def test_the_publishing_bounds_are_settings_and_reach_the_publisher(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import app

    defaults = Settings.from_env(BASE, function=WORKER)
    assert (defaults.publish_max_messages, defaults.publish_max_bytes,
            defaults.publish_retry) == (1000, 10 * 1024 * 1024, 0.2)
    for name in ("CALSYNC_PUBLISH_MAX_MESSAGES", "CALSYNC_PUBLISH_MAX_BYTES",
                 "CALSYNC_PUBLISH_RETRY_SECONDS"):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({**BASE, name: "0"}, function=WORKER)
    monkeypatch.setenv("PUBSUB_EMULATOR_HOST", "127.0.0.1:9")  # not contacted here
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:9")
    app.reset()
    try:
        config = Settings.from_env({**BASE, "CALSYNC_PUBSUB_TOPIC": "calsync-changes",
                                    "CALSYNC_PUBLISH_TIMEOUT_SECONDS": "4",
                                    "CALSYNC_PUBLISH_MAX_MESSAGES": "50",
                                    "CALSYNC_PUBLISH_MAX_BYTES": "200000",
                                    "CALSYNC_PUBLISH_RETRY_SECONDS": "0.5"}, function=WORKER)
        built = app.outbox(config)
        assert (built.limits.timeout, built.limits.max_messages, built.limits.max_bytes,
                built.limits.retry_backoff) == (4.0, 50, 200000, 0.5)
        options = built.publisher._client.publisher_options
        assert (options.flow_control.message_limit, options.flow_control.byte_limit,
                options.timeout, options.retry) == (100, 400000, 4.0, None)
    finally:
        app.reset()
