"""Set up a fresh machine for calsync: virtualenvs, pip installs, tool checks.

Standard library only: it runs before any virtualenv exists. Re-running is
cheap: each virtualenv records a hash of its requirement files and is only
re-installed when they change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (virtualenv dir, requirement files) — the Cloud Tasks emulator pins
# protobuf<5, which clashes with the runtime clients, so it gets its own.
ENVIRONMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (".venv", ("requirements.txt", "requirements-dev.txt")),
    (".venv-tasks", ("requirements-tasks-emulator.txt",)),
    (".venv-checkov", ("requirements-checkov.txt",)),
)


def _say(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def _requirements_hash(files: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode())
        digest.update((ROOT / name).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def ensure_virtualenv(directory: str, files: tuple[str, ...]) -> None:
    path = ROOT / directory
    stamp = path / ".calsync-requirements"
    wanted = _requirements_hash(files)
    if stamp.exists() and stamp.read_text().strip() == wanted and (path / "bin/python").exists():
        _say(f"{directory}: up to date")
        return
    if not (path / "bin/python").exists():
        _say(f"{directory}: creating virtualenv")
        venv.EnvBuilder(with_pip=True, clear=True).create(path)
    _say(f"{directory}: installing {' '.join(files)} (first run takes a minute)")
    command = [str(path / "bin/python"), "-m", "pip", "install", "--quiet",
               "--disable-pip-version-check"]
    for name in files:
        command += ["-r", str(ROOT / name)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        noise = "WARNING: Location"
        output = "\n".join(
            line for line in (result.stdout + result.stderr).splitlines() if noise not in line
        )
        sys.exit(f"[setup] pip install into {directory} failed:\n{output}")
    stamp.write_text(wanted + "\n")


def check_tools() -> None:
    """Name exactly what is missing, and how to get it."""
    missing: list[str] = []
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        missing.append("gcloud (Google Cloud SDK) is not on PATH: install the Google Cloud SDK")
    else:
        sdk_root = _sdk_root(gcloud)
        emulator = sdk_root / "platform/cloud-firestore-emulator/cloud_firestore_emulator"
        if not emulator.exists():
            missing.append(
                f"the Firestore emulator is not installed under {sdk_root}: "
                "run `gcloud components install cloud-firestore-emulator` "
                "(or apt-get install google-cloud-cli-firestore-emulator)"
            )
        if not (sdk_root / "platform/pubsub-emulator").is_dir():
            missing.append(
                f"the Pub/Sub emulator is not installed under {sdk_root}: "
                "run `gcloud components install pubsub-emulator` "
                "(or apt-get install google-cloud-cli-pubsub-emulator)"
            )
    if shutil.which("java") is None:
        missing.append("java is not on PATH: the Firestore emulator needs a JRE 11+ "
                       "(apt-get install openjdk-17-jre-headless)")
    if missing:
        sys.exit("[setup] missing tools:\n  - " + "\n  - ".join(missing))
    _say("gcloud, the Firestore and Pub/Sub emulators and java: present")


def _sdk_root(gcloud: str) -> Path:
    override = os.environ.get("CLOUDSDK_ROOT_DIR")
    if override:
        return Path(override)
    real = Path(os.path.realpath(gcloud))
    return real.parent.parent  # <sdk>/bin/gcloud


def main() -> None:
    check_tools()
    for directory, files in ENVIRONMENTS:
        ensure_virtualenv(directory, files)
    sys.path.insert(0, str(ROOT))  # stdlib-only module; works when run as a script too
    from infra.tfcheck import schema_cache

    schema_cache.ensure()


if __name__ == "__main__":
    main()
