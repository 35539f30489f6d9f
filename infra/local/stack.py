"""The whole local stack: Firestore, Cloud Tasks, Calendar and Pub/Sub emulators, the
four functions, and the example consumer app that Pub/Sub pushes each change to.

`Stack.start()` brings everything up in dependency order and waits until each
part answers; `Stack.stop()` stops every process it started (whole process
groups), also when start-up failed half-way. `python -m infra.local up`, the
e2e fixtures and `make demo` all use this one class.
"""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from infra.local import components
from infra.local.processes import ManagedProcess, StackError, free_port

ROOT = components.ROOT
LOCAL_REGION = "local"
DEFAULT_QUEUE = "calsync-sync"
DEFAULT_TOPIC = "calsync-changes"
CONSUMER_SUBSCRIPTION = "calsync-consumer-push"
TASKS_INVOKER_SA = "tasks-invoker@local.iam.gserviceaccount.com"
FALLBACK_MAX_ATTEMPTS = 10


def queue_max_attempts(variables_tf: Path = ROOT / "terraform/variables.tf") -> int:
    """The queue's max_attempts default from Terraform, so local retries match production."""
    try:
        text = variables_tf.read_text()
    except OSError:
        return FALLBACK_MAX_ATTEMPTS
    match = re.search(
        r'variable\s+"queue_max_attempts"\s*\{[^}]*?default\s*=\s*(\d+)', text, re.S
    )
    return int(match.group(1)) if match else FALLBACK_MAX_ATTEMPTS


@dataclass
class StackConfig:
    """Ports are picked free unless given; `run_dir` receives logs and stack.env."""

    project: str = "calsync-local"
    run_dir: Path = ROOT / ".run"
    firestore_port: int = 0
    tasks_port: int = 0
    calendar_port: int = 0
    function_ports: dict[str, int] = field(default_factory=dict)
    functions_source: Path = ROOT / "main.py"
    queue: str = DEFAULT_QUEUE
    extra_function_env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0
    # Delivery: the Pub/Sub emulator, the topic every change is published to and
    # the example consumer that a push subscription delivers them to.
    pubsub: bool = True
    pubsub_port: int = 0
    consumer_port: int = 0
    topic: str = DEFAULT_TOPIC


class Stack:
    def __init__(self, config: StackConfig | None = None) -> None:
        self.config = config or StackConfig()
        self.processes: list[ManagedProcess] = []
        self.env: dict[str, str] = {}

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, progress: bool = False) -> dict[str, str]:
        """Start everything; on any failure stop what was started and re-raise."""
        try:
            return self._start(progress)
        except BaseException:
            self.stop()
            raise

    def _start(self, progress: bool) -> dict[str, str]:
        cfg = self.config
        run_dir = cfg.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "stack.env").unlink(missing_ok=True)
        self._pids_file = run_dir / "stack.pids"
        self._pids_file.write_text("")

        def say(message: str) -> None:
            if progress:
                print(f"[stack] {message}", flush=True)

        ports = {
            "firestore": cfg.firestore_port or free_port(),
            "tasks": cfg.tasks_port or free_port(),
            "calendar": cfg.calendar_port or free_port(),
            "pubsub": cfg.pubsub_port or free_port(),
            "consumer": cfg.consumer_port or free_port(),
        }
        fn_ports = {t: cfg.function_ports.get(t) or free_port()
                    for t in components.FUNCTION_TARGETS}
        host = components.HOST
        queue_path = f"projects/{cfg.project}/locations/{LOCAL_REGION}/queues/{cfg.queue}"
        calendar_base = f"http://{host}:{ports['calendar']}"
        urls = {t: f"http://{host}:{p}/" for t, p in fn_ports.items()}

        started = time.monotonic()
        say(f"firestore emulator on {host}:{ports['firestore']}")
        self._started(components.start_firestore(
            ports["firestore"], run_dir, cfg.startup_timeout, on_start=self._record))
        attempts = queue_max_attempts()
        say(f"cloud tasks emulator on {host}:{ports['tasks']} "
            f"(queue {cfg.queue}, max attempts {attempts})")
        self._started(components.start_tasks_emulator(
            ports["tasks"], run_dir, attempts, timeout=cfg.startup_timeout,
            on_start=self._record))
        components.create_queue(f"{host}:{ports['tasks']}", queue_path)
        say(f"calendar emulator on {calendar_base}")
        self._started(components.start_calendar_emulator(
            ports["calendar"], run_dir, cfg.startup_timeout, on_start=self._record))
        delivery: dict[str, str] = {}
        if cfg.pubsub:
            from infra import pubsub_emulator

            pubsub_host = f"{host}:{ports['pubsub']}"
            say(f"pubsub emulator on {pubsub_host} (topic {cfg.topic})")
            self._started(pubsub_emulator.start_pubsub(
                ports["pubsub"], run_dir, cfg.startup_timeout, on_start=self._record))
            with pubsub_emulator.emulator_env(pubsub_host):
                pubsub_emulator.create_topic(cfg.project, cfg.topic)
            delivery = {"PUBSUB_EMULATOR_HOST": pubsub_host, "CALSYNC_PUBSUB_TOPIC": cfg.topic}

        env = {
            "GOOGLE_CLOUD_PROJECT": cfg.project,
            "FIRESTORE_EMULATOR_HOST": f"{host}:{ports['firestore']}",
            "CLOUD_TASKS_EMULATOR_HOST": f"{host}:{ports['tasks']}",
            "CALENDAR_API_ENDPOINT": f"{calendar_base}/calendar/v3/",
            "CALENDAR_EMULATOR_CONTROL": f"{calendar_base}/control/",
            "CALSYNC_OAUTH_TOKEN_URI": f"{calendar_base}/token",
            "CALSYNC_OAUTH_AUTH_URI": f"{calendar_base}/o/oauth2/v2/auth",
            "CALSYNC_REGION": LOCAL_REGION,
            "CALSYNC_TASKS_QUEUE": cfg.queue,
            "CALSYNC_TASKS_INVOKER_SA": TASKS_INVOKER_SA,
            "CALSYNC_WEBHOOK_URL": urls["webhook"],
            "CALSYNC_WORKER_URL": urls["sync_worker"],
            "CALSYNC_RENEWER_URL": urls["renew_channels"],
            # Fresh keys per stack: nothing secret is committed or reused.
            "CALSYNC_CHANNEL_TOKEN_KEYS": "local1:" + _new_key(),
            "CALSYNC_CREDENTIAL_KEYS": "local1:" + _new_key(),
            "CALSYNC_OAUTH_CLIENT_ID": "calsync-local-client",
            "CALSYNC_OAUTH_CLIENT_SECRET": "local-" + secrets.token_hex(8),
            "CALSYNC_JSON_LOGS": "true",
            # Domain-wide delegation against the emulator's jwt-bearer grant: a key
            # made for this stack only (production signs keylessly through IAM).
            "CALSYNC_DELEGATION_KEY_FILE": str(_delegation_key(run_dir, cfg.project,
                                                               f"{calendar_base}/token")),
            **delivery,
            **cfg.extra_function_env,
        }
        for target in components.FUNCTION_TARGETS:
            say(f"function {target} on {urls[target]}")
            self._started(components.start_function(
                target, fn_ports[target], run_dir, env, cfg.functions_source,
                cfg.startup_timeout, on_start=self._record))

        if cfg.pubsub:
            consumer_url = f"http://{host}:{ports['consumer']}/"
            say(f"consumer app on {consumer_url} (push subscription {CONSUMER_SUBSCRIPTION})")
            self._started(components.start_consumer(
                ports["consumer"], run_dir, urls["api"].rstrip("/"), cfg.startup_timeout,
                on_start=self._record))
            from infra import pubsub_emulator

            with pubsub_emulator.emulator_env(env["PUBSUB_EMULATOR_HOST"]):
                pubsub_emulator.create_subscription(cfg.project, cfg.topic,
                                                    CONSUMER_SUBSCRIPTION,
                                                    push_endpoint=consumer_url)
            env["CALSYNC_CONSUMER_URL"] = consumer_url

        self.env = {
            **env,
            "CALSYNC_API_URL": urls["api"],
            "CALSYNC_TASKS_QUEUE_PATH": queue_path,
            "CALSYNC_RUN_DIR": str(run_dir),
        }
        _write_env(run_dir / "stack.env", self.env)
        say(f"all components answering after {time.monotonic() - started:.1f}s")
        return self.env

    def _record(self, process: ManagedProcess) -> None:
        # Written the moment a process starts, so even one that dies during start-up
        # is on record for whoever checks that nothing was left behind.
        with open(self._pids_file, "a") as pids:
            pids.write(f"{process.pid} {process.name}\n")

    def _started(self, process: ManagedProcess) -> None:
        self.processes.append(process)

    def stop(self) -> None:
        """Stop every process this stack started, newest first."""
        while self.processes:
            self.processes.pop().stop()

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]


def _delegation_key(run_dir: Path, project: str, token_uri: str) -> Path:
    """A throwaway service-account key file for the local delegation account."""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path = run_dir / "delegation-key.json"
    path.write_text(json.dumps({
        "type": "service_account", "project_id": project, "private_key_id": "local1",
        "private_key": pem, "client_email": f"delegation@{project}.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": token_uri,
    }))
    path.chmod(0o600)
    return path


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _write_env(path: Path, env: dict[str, str]) -> None:
    lines = [f"{key}={value}" for key, value in env.items()]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


__all__ = ["Stack", "StackConfig", "StackError", "queue_max_attempts"]
