"""`python -m infra.tfcheck [terraform-dir]`: every offline check, for Cloud Build.

The same checks run as tests in tests/terraform (with proofs that each one
fails on a broken copy); this entry point prints the problems of one tree.
What terraform/ deploys ahead of the code (a field the code will log, a
setting config.py will declare) is printed as pending and does not fail it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.tfcheck import checkov_run, consistency, fmt, hcl, schema_cache, schema_check

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    directory = Path(argv[0]) if argv else ROOT / "terraform"
    config = hcl.load(directory)
    problems = [
        *fmt.problems(directory),
        *schema_check.check(config, schema_cache.load()),
        *consistency.check(config, ROOT),
        *checkov_run.problems(checkov_run.run(directory)),
        *checkov_run.undocumented_skips(directory),
    ]
    pending = [p for p in problems if consistency.is_pending(p)]
    for problem in problems:
        print(f"[pending] {problem}" if problem in pending else problem)
    failing = len(problems) - len(pending)
    print(f"[tfcheck] {directory}: {failing} problem(s), {len(pending)} pending on code "
          "being written elsewhere (AHEAD_OF_CODE, AHEAD_OF_CONFIG)")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
