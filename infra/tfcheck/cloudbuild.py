"""Rules for cloudbuild.yaml, read as text (PyYAML is not a dependency of .venv).

Every image is pinned to a version (never `latest`), the project and region
are substitutions, and `terraform apply` only runs on the main branch.
"""

from __future__ import annotations

import re

_IMAGE = re.compile(r"^\s*(?:-\s*)?name:\s*(?P<image>\S+)\s*$", re.M)
_SUBSTITUTION = re.compile(r"^\s+(?P<key>_[A-Z0-9_]+):\s*(?P<value>\S+)\s*$", re.M)
_PINNED = re.compile(r"^[\w./-]+:(?!latest$)[\w.-]*\d[\w.-]*$")


def problems(text: str) -> list[str]:
    found: list[str] = []
    substitutions = dict(_SUBSTITUTION.findall(text))
    for key in ("_PROJECT", "_REGION"):
        if key not in substitutions:
            found.append(f"[cloudbuild] substitution {key} is missing")
    for match in _IMAGE.finditer(text):
        image = match["image"]
        ref = re.fullmatch(r"\$\{(_[A-Z0-9_]+)\}", image)
        resolved = substitutions.get(ref.group(1), "") if ref else image
        if not _PINNED.match(resolved):
            found.append(f"[cloudbuild] image {image} ({resolved or 'undefined'}) is not "
                         "pinned to a version")
    if "terraform apply" not in text:
        found.append("[cloudbuild] no terraform apply step")
        return found
    apply_block = text[text.find("terraform apply") - 200: text.find("terraform apply")]
    if 'if [ "${BRANCH_NAME}" = "main" ]' not in apply_block:
        found.append('[cloudbuild] terraform apply must be guarded by '
                     '`if [ "${BRANCH_NAME}" = "main" ]`')
    for needed in ("make test", "fmt", "-check", "infra.tfcheck", "terraform init",
                   "plan"):
        if needed not in text:
            found.append(f"[cloudbuild] no step runs {needed!r}")
    return found
