"""Reading the functions' JSON log files that the local stack writes to its run dir."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def json_log_lines(path: Path, message: str) -> list[dict[str, Any]]:
    """Every JSON log line of `path` whose `message` is exactly `message`."""
    if not path.exists():
        return []
    marker = f'"message":"{message}"'
    return [json.loads(line) for line in path.read_text(errors="replace").splitlines()
            if line.startswith("{") and marker in line]
