"""`make test`: the whole suite in one pytest run, with a clear summary.

pytest exits 5 when it collected no test; for calsync that means the suite
was emptied, so the full run reports it as a failure, loudly; a selection
passed through `make test ARGS=...` that matches nothing exits 0 with a note.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NO_TESTS_COLLECTED = 5


def main(argv: list[str]) -> int:
    command = [sys.executable, "-m", "pytest", *(argv or ["tests"])]
    print("[test] " + " ".join(command[2:]), flush=True)
    code = subprocess.call(command, cwd=ROOT)
    if code == NO_TESTS_COLLECTED:
        if argv:  # a hand-made selection that matched nothing is not a failure
            print("[test] the selection matched no tests", file=sys.stderr)
            return 0
        print("[test] pytest collected no tests: failing, since calsync always has tests",
              file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
