"""The committed tfvars hold settings, never secrets, and only declared variables.

People and the pipeline apply the same `terraform/*.tfvars`, so a value in it
is in git: a sensitive or secret-looking variable there, or a value shaped
like a key ring, is a leak; an undeclared name is a typo Terraform would only
warn about.
"""

from __future__ import annotations

import re

from infra.tfcheck import hcl

_SECRETISH = re.compile(r"secret|password|token|credential|(^|_)keys?(_|$)", re.I)
_KEYRING = re.compile(r"^[A-Za-z0-9_-]{1,16}:[A-Za-z0-9+/]{20,}={0,2}(,|$)")
ALLOWED = {"secret_versions"}  # version numbers, not values


def check(config: hcl.Config) -> list[str]:
    problems: list[str] = []
    for path in sorted(config.directory.glob("*.tfvars")):
        values = hcl.parse(path)
        for name, value in values.items():
            where = f"[tfvars] {path.name}: {name}"
            spec = config.variables.get(name)
            if spec is None:
                problems.append(f"{where} is not a declared variable")
                continue
            if spec.get("sensitive") is True:
                problems.append(f"{where} is sensitive: secrets never go in a committed "
                                "file (Secret Manager versions, README)")
            elif (_SECRETISH.search(name) and name not in ALLOWED
                  and not name.endswith("_id")):
                problems.append(f"{where} looks like a secret: secrets never go in a "
                                "committed file")
            for text in hcl.strings(value):
                if _KEYRING.match(text):
                    problems.append(f"{where} holds a value shaped like a key ring")
    return problems
