"""How each component of the local stack is started and known to be ready."""

from __future__ import annotations

import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from infra.local.processes import ManagedProcess, StackError, port_in_use, wait_until

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
FUNCTION_TARGETS = ("webhook", "sync_worker", "renew_channels", "api")


def _http_status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def _launch(process: ManagedProcess, ready: Callable[[], bool], timeout: float,
            what: str) -> ManagedProcess:
    """Start and wait; a process that never becomes ready is stopped, never leaked."""
    process.start()
    try:
        wait_until(ready, process, timeout, what)
    except BaseException:
        process.stop()
        raise
    return process


def _claim(name: str, port: int) -> None:
    if port_in_use(port):
        raise StackError(f"{name}: port {port} on {HOST} is already in use "
                         f"(stop whatever holds it, or choose another port)")


def _base_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never let a developer's real credentials or project leak into the local world.
    for key in ("GOOGLE_APPLICATION_CREDENTIALS", "FIRESTORE_EMULATOR_HOST",
                "CLOUD_TASKS_EMULATOR_HOST", "CALENDAR_API_ENDPOINT"):
        env.pop(key, None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_firestore(
    port: int, run_dir: Path, timeout: float = 60.0,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    _claim("firestore emulator", port)
    process = ManagedProcess(
        "firestore emulator",
        ["gcloud", "emulators", "firestore", "start", f"--host-port={HOST}:{port}",
         "--quiet"],
        run_dir / "firestore.log",
        env=_base_env(),
        on_start=on_start,
    )
    url = f"http://{HOST}:{port}/"
    return _launch(process, lambda: _http_status(url) == 200, timeout, f"answering on {url}")


def reset_firestore(host: str, project: str, attempts: int = 300) -> None:
    """Delete every document (the emulator's documents DELETE endpoint).

    The emulator answers 409 while a transaction holds locks; those end within
    its lock timeout (a transaction whose client went away holds them until
    then), so retry for up to a minute.
    """
    request = urllib.request.Request(
        f"http://{host}/emulator/v1/projects/{project}/databases/(default)/documents",
        method="DELETE",
    )
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as err:
            if err.code != 409 or attempt == attempts - 1:
                raise StackError(f"firestore reset answered {err.code}") from err
        time.sleep(0.2)


def tasks_emulator_python() -> Path:
    python = ROOT / ".venv-tasks/bin/python"
    if not python.exists():
        raise StackError("the Cloud Tasks emulator virtualenv .venv-tasks is missing: "
                         "run `make setup` (python3 -m infra.bootstrap)")
    return python


def start_tasks_emulator(
    port: int, run_dir: Path, max_attempts: int, default_queue: str | None = None,
    timeout: float = 30.0,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    """The emulator retries a failed task while dispatch_count <= max_retries."""
    _claim("cloud tasks emulator", port)
    argv = [str(tasks_emulator_python()), "-W", "ignore", "-m", "gcloud_tasks_emulator",
            "start", "--port", str(port), "--max-retries", str(max(max_attempts - 1, 0))]
    if default_queue:
        argv += ["--default-queue", default_queue]
    process = ManagedProcess("cloud tasks emulator", argv, run_dir / "tasks.log",
                             env=_base_env(), on_start=on_start)
    host = f"{HOST}:{port}"
    return _launch(process, lambda: _tasks_answers(host), timeout, f"answering gRPC on {host}")


def tasks_client(host: str):  # type: ignore[no-untyped-def]
    import grpc
    from google.cloud import tasks_v2
    from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

    channel = grpc.insecure_channel(host)
    return tasks_v2.CloudTasksClient(transport=CloudTasksGrpcTransport(channel=channel))


def _tasks_answers(host: str) -> bool:
    client = tasks_client(host)
    client.list_queues(parent="projects/probe/locations/probe", timeout=2)
    return True


def create_queue(host: str, queue_path: str) -> None:
    from google.cloud import tasks_v2

    client = tasks_client(host)
    parent = queue_path.rsplit("/queues/", 1)[0]
    client.create_queue(parent=parent, queue=tasks_v2.Queue(name=queue_path), timeout=10)


def start_calendar_emulator(
    port: int, run_dir: Path, timeout: float = 30.0,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    _claim("calendar emulator", port)
    process = ManagedProcess(
        "calendar emulator",
        [sys.executable, "-m", "infra.calendar_emulator", "--host", HOST, "--port", str(port)],
        run_dir / "calendar-emulator.log",
        env=_base_env(),
        cwd=ROOT,
        on_start=on_start,
    )
    url = f"http://{HOST}:{port}/control/health"
    return _launch(process, lambda: _http_status(url) == 200, timeout, f"answering on {url}")


def start_function(
    target: str, port: int, run_dir: Path, env: dict[str, str], source: Path,
    timeout: float = 30.0,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    _claim(f"function {target}", port)
    functions_framework = Path(sys.executable).parent / "functions-framework"
    process = ManagedProcess(
        f"function {target}",
        [str(functions_framework), "--target", target, "--source", str(source),
         "--host", HOST, "--port", str(port)],
        run_dir / f"function-{target}.log",
        env={**_base_env(), **env},
        cwd=source.parent,
        on_start=on_start,
    )
    url = f"http://{HOST}:{port}/"
    # Any HTTP answer (even 4xx/501) means the function is loaded and serving.
    return _launch(process, lambda: _http_status(url) > 0, timeout, f"answering on {url}")


def start_consumer(
    port: int, run_dir: Path, api_url: str, timeout: float = 30.0,
    on_start: Callable[[ManagedProcess], None] | None = None,
) -> ManagedProcess:
    """The example consumer app (`python -m examples.consumer`) that Pub/Sub pushes to.

    With `CONSUMER_INSECURE_NO_AUTH=1`: the Pub/Sub emulator sends no OIDC token
    and the local api function wants none (without the flag the consumer refuses
    to start). Its position is kept in `consumer.sqlite3`, started empty like
    the stack's Firestore; its output (one line per change) goes to `consumer.log`.
    """
    _claim("consumer app", port)
    state = run_dir / "consumer.sqlite3"
    state.unlink(missing_ok=True)  # positions of the previous stack's subscriptions
    process = ManagedProcess(
        "consumer app",
        [sys.executable, "-m", "examples.consumer", "--host", HOST, "--port", str(port)],
        run_dir / "consumer.log",
        env={**_base_env(), "CONSUMER_INSECURE_NO_AUTH": "1", "CALSYNC_API_URL": api_url,
             "CONSUMER_STATE_PATH": str(state), "PYTHONUNBUFFERED": "1"},
        cwd=ROOT,
        on_start=on_start,
    )
    url = f"http://{HOST}:{port}/"
    return _launch(process, lambda: _http_status(url) > 0, timeout, f"answering on {url}")
