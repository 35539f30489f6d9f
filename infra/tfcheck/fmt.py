"""`terraform fmt -check -recursive`: formatting is part of the offline checks."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def problems(directory: Path) -> list[str]:
    """Files terraform fmt would change, one message each; empty when formatted."""
    terraform = shutil.which("terraform")
    if terraform is None:
        raise RuntimeError("terraform is not on PATH: install Terraform >= 1.7")
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-no-color",
                             str(directory)], capture_output=True, text=True, env=env,
                            timeout=120)
    if result.returncode == 0:
        return []
    files = [line for line in result.stdout.splitlines() if line.strip()]
    if not files:  # a syntax error rather than a formatting difference
        return [f"[fmt] terraform fmt failed: {result.stderr.strip()}"]
    return [f"[fmt] {name} is not formatted (run `terraform fmt -recursive terraform/`)"
            for name in files]
