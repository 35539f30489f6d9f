"""The committed `.terraform.lock.hcl` against `versions.tf`.

Every provider `required_providers` names has a lock entry whose version its
constraint admits (and the lock records that same constraint), with the
registry's `zh:` checksums (the SHA-256 of each platform's release zip, so
`terraform init` verifies a download on any platform before `terraform
providers lock` adds the `h1:` hash of the platforms in use). The checksums
were taken from the registry's published sums as other projects' lock files
record them, not computed here (no provider can be downloaded on this machine).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from infra.tfcheck import hcl

LOCK_FILE = ".terraform.lock.hcl"
REGISTRY = "registry.terraform.io/"
_ZH = re.compile(r"^zh:[0-9a-f]{64}$")
_CLAUSE = re.compile(r"^\s*(>=|<=|>|<|=|~>|!=)?\s*(\d+(?:\.\d+){0,2})\s*$")


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def admits(constraint: str, version: str) -> bool:
    """Whether Terraform's version constraint `constraint` admits `version`."""
    have = _version(version)
    for clause in constraint.split(","):
        match = _CLAUSE.match(clause)
        if match is None:
            raise ValueError(f"unreadable version constraint {constraint!r}")
        operator, bound_text = match.group(1) or "=", match.group(2)
        bound = _version(bound_text)
        if operator == "~>":
            depth = bound_text.count(".")  # ~> 6.50.0 pins 6.50.x; ~> 3.7 pins 3.x
            upper = (bound[0] + 1, 0, 0) if depth <= 1 else (bound[0], bound[1] + 1, 0)
            ok = bound <= have < upper
        else:
            ok = {">=": have >= bound, "<=": have <= bound, ">": have > bound,
                  "<": have < bound, "=": have == bound, "!=": have != bound}[operator]
        if not ok:
            return False
    return True


def _same_constraint(a: str, b: str) -> bool:
    def normal(text: str) -> list[tuple[str, tuple[int, int, int], int]]:
        out = []
        for clause in text.split(","):
            match = _CLAUSE.match(clause)
            if match is None:
                return [("?", (0, 0, 0), 0)]
            operator, bound = match.group(1) or "=", match.group(2)
            # `~>` keeps the precision it was written with; the others are normalised.
            out.append((operator, _version(bound), bound.count(".") if operator == "~>" else 0))
        return sorted(out)

    return normal(a) == normal(b)


def required_providers(terraform_dir: Path) -> dict[str, dict[str, Any]]:
    """`{name: {"source", "version"}}` from every `terraform { required_providers }` block."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(terraform_dir.glob("*.tf")):
        parsed = hcl.parse(path)
        for block in parsed.get("terraform", []):
            for entry in block.get("required_providers", []):
                found.update(entry)
    return found


def locked(terraform_dir: Path) -> dict[str, dict[str, Any]]:
    """`{source address: {"version", "constraints", "hashes"}}` from the lock file."""
    path = terraform_dir / LOCK_FILE
    if not path.exists():
        return {}
    parsed = hcl.parse(path)
    entries: dict[str, dict[str, Any]] = {}
    for block in parsed.get("provider", []):
        for address, body in block.items():
            entries[address.strip('"')] = body
    return entries


def check(terraform_dir: Path) -> list[str]:
    """One message per problem of the lock file."""
    if not (terraform_dir / LOCK_FILE).exists():
        return [f"[lockfile] terraform/{LOCK_FILE} is missing: every init would pick "
                "provider builds nobody checked"]
    required, entries = required_providers(terraform_dir), locked(terraform_dir)
    problems = []
    for name, wanted in sorted(required.items()):
        source = str(wanted.get("source", f"hashicorp/{name}"))
        address = source if "/" in source and "." in source.split("/")[0] else REGISTRY + source
        entry = entries.get(address)
        constraint = str(wanted.get("version", ""))
        if entry is None:
            problems.append(f"[lockfile] {address} (required as {name!r}) is not locked")
            continue
        version = str(entry.get("version", ""))
        if constraint and not admits(constraint, version):
            problems.append(f"[lockfile] {address} is locked at {version}, which "
                            f"versions.tf's {constraint!r} does not admit")
        if constraint and not _same_constraint(constraint, str(entry.get("constraints", ""))):
            problems.append(f"[lockfile] {address} records constraints "
                            f"{entry.get('constraints')!r}, not versions.tf's {constraint!r}")
        hashes = [str(h) for h in entry.get("hashes", [])]
        if not any(_ZH.match(h) for h in hashes):
            problems.append(f"[lockfile] {address} has no zh: release checksum")
        if any(not (_ZH.match(h) or h.startswith("h1:")) for h in hashes):
            problems.append(f"[lockfile] {address} has a hash that is neither zh: nor h1:")
    for address in sorted(set(entries) - {
            (s if "." in s.split("/")[0] else REGISTRY + s)
            for s in (str(w.get("source", f"hashicorp/{n}")) for n, w in required.items())}):
        problems.append(f"[lockfile] {address} is locked but no longer required")
    return problems
