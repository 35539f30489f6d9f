"""Field-level diffs between two versions of a Google event resource.

Only top-level, non-volatile fields are reported. Volatile fields (`etag`,
`updated`, `sequence`) and calsync's own `_`-prefixed fields change on every
write, so they are stored but never reported on their own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VOLATILE_FIELDS = frozenset({"etag", "updated", "sequence"})

FieldChanges = dict[str, dict[str, Any]]


def is_reported(name: str) -> bool:
    """Whether a top-level field takes part in change entries."""
    return not name.startswith("_") and name not in VOLATILE_FIELDS


def reported_fields(resource: Mapping[str, Any] | None) -> dict[str, Any]:
    """The reported fields of a resource (empty for None)."""
    if not resource:
        return {}
    return {name: value for name, value in resource.items() if is_reported(name)}


def diff_fields(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> FieldChanges:
    """Changed reported fields as `{name: {"before": old, "after": new}}`.

    A field missing on one side is None there; `before=None` reports every
    field of `after` (a creation), `after=None` every field of `before`.
    """
    old = reported_fields(before)
    new = reported_fields(after)
    changes: FieldChanges = {}
    for name in sorted(old.keys() | new.keys()):
        was, now = old.get(name), new.get(name)
        if was != now:
            changes[name] = {"before": was, "after": now}
    return changes
