"""The functions-framework source of a test stack: `main.py`'s four entry points,
served unchanged, in a process with the test hooks installed (tests/faults/hooks.py).

Used only by tests (`world.hooked_stack`); production deploys `main.py` itself.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.faults import hooks  # noqa: E402

hooks.install(os.environ.get("FUNCTION_TARGET", ""))

from main import api, renew_channels, sync_worker, webhook  # noqa: E402

__all__ = ["api", "renew_channels", "sync_worker", "webhook"]
