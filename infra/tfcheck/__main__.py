"""`python -m infra.tfcheck [terraform-dir]`: every offline check, for Cloud Build.

The same checks run as tests in tests/terraform (with proofs that each one
fails on a broken copy); this entry point prints the problems of one tree.
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
    for problem in problems:
        print(problem)
    print(f"[tfcheck] {directory}: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
