"""Check terraform/ against the google provider's schema, as `terraform validate` would.

For every resource and data source: the type exists; every attribute and
nested block (dynamic blocks included) exists where it is used; every required
attribute and block is set; every `google_*.name.attr` reference names a
declared resource and an attribute the provider knows. Also: every variable
has a type and a description, every output a description.

The google schema comes from `schema_cache.load()`; the other providers'
few types are described by hand below.
"""

from __future__ import annotations

import difflib
from typing import Any

from infra.tfcheck import hcl
from infra.tfcheck.schema_cache import normalise

META_ARGUMENTS = {"count", "for_each", "depends_on", "lifecycle", "provider",
                  "provisioner", "connection"}

# hashicorp/archive 2.x, hashicorp/random 3.x and hashicorp/time 0.x: only the
# types calsync uses (the ephemeral random_password is not a resource).
_OTHER_STRUCTS: dict[str, Any] = {
    "archive.file": {
        "attributes": {"type": True, "output_path": True, "source_content": False,
                       "source_content_filename": False, "source_file": False,
                       "source_dir": False, "excludes": False,
                       "exclude_symlink_directories": False, "output_file_mode": False},
        "blocks": {"source": {"struct": "archive.file.source", "required": False,
                              "list": True}},
    },
    "archive.file.source": {"attributes": {"content": True, "filename": True}, "blocks": {}},
    "random.bytes": {"attributes": {"length": True, "keepers": False}, "blocks": {}},
    "time.sleep": {"attributes": {"create_duration": False, "destroy_duration": False,
                                  "triggers": False}, "blocks": {}},
}
_OTHER_RESOURCES = {"random_bytes": "random.bytes", "time_sleep": "time.sleep"}
_OTHER_DATA_SOURCES = {"archive_file": "archive.file"}
_OTHER_OUTPUTS = {
    "archive_file": ["outputpath", "outputsize", "outputmd5", "outputsha", "outputsha256",
                     "outputbase64sha256", "outputsha512", "outputbase64sha512", "id"],
    "random_bytes": ["base64", "hex", "id", "length", "keepers"],
    "time_sleep": ["createduration", "destroyduration", "id", "triggers"],
}


def check(config: hcl.Config, schema: dict[str, Any]) -> list[str]:
    """Every schema problem in `config`, one message each; empty when valid."""
    structs = {**schema["structs"], **_OTHER_STRUCTS}
    resources = {**schema["resources"], **_OTHER_RESOURCES}
    data_sources = {**schema["data_sources"], **_OTHER_DATA_SOURCES}
    outputs = {**schema["outputs"], **_OTHER_OUTPUTS}
    problems: list[str] = []
    for block in config.blocks:
        known = resources if block.kind == "resource" else data_sources
        where = f"{block.file}: {block.address}"
        if block.type not in known:
            kind = "resource" if block.kind == "resource" else "data source"
            problems.append(f"[schema] {where}: unknown {kind} type {block.type!r}"
                            + _suggest(block.type, known))
            continue
        _check_body(block.body, known[block.type], structs, where, problems, top=True)
    for block in config.blocks:
        for ref in hcl.references(block.body):
            problems += _check_reference(ref, config, outputs, f"{block.file}: {block.address}")
    for name, body in [*config.locals.items(), *config.outputs.items()]:
        for ref in hcl.references(body):
            problems += _check_reference(ref, config, outputs, f"local/output {name}")
    for name, spec in config.variables.items():
        if "type" not in spec:
            problems.append(f"[schema] variable {name!r} has no type")
        if not str(spec.get("description", "")).strip():
            problems.append(f"[schema] variable {name!r} has no description")
    for name, spec in config.outputs.items():
        if not str(spec.get("description", "")).strip():
            problems.append(f"[schema] output {name!r} has no description")
    return problems


def _check_body(body: dict[str, Any], struct_name: str, structs: dict[str, Any],
                where: str, problems: list[str], *, top: bool = False) -> None:
    struct = structs[struct_name]
    attributes: dict[str, bool] = struct["attributes"]
    blocks: dict[str, dict[str, Any]] = struct["blocks"]
    present = set(body)
    for key, value in body.items():
        if top and key in META_ARGUMENTS:
            continue
        if key == "dynamic":
            for dynamic in value:
                for label, spec in dynamic.items():
                    present.add(label)
                    if label not in blocks:
                        problems.append(f"[schema] {where}: unknown nested block {label!r} "
                                        f"(dynamic)" + _suggest(label, blocks))
                        continue
                    for content in spec.get("content", []):
                        _check_body(content, blocks[label]["struct"], structs,
                                    f"{where}.{label}", problems)
            continue
        if key in attributes:
            continue
        if key in blocks:
            if not _is_block(value):
                problems.append(f"[schema] {where}: {key!r} is a nested block; "
                                f"write `{key} {{ ... }}`, not `{key} = ...`")
                continue
            if not blocks[key]["list"] and len(value) > 1:
                problems.append(f"[schema] {where}: block {key!r} may appear only once")
            for item in value:
                _check_body(item, blocks[key]["struct"], structs, f"{where}.{key}", problems)
            continue
        problems.append(f"[schema] {where}: unknown attribute or block {key!r}"
                        + _suggest(key, [*attributes, *blocks]))
    for name, required in attributes.items():
        if required and name not in present:
            problems.append(f"[schema] {where}: required attribute {name!r} is not set")
    for name, spec in blocks.items():
        if spec["required"] and name not in present:
            problems.append(f"[schema] {where}: required block {name!r} is missing")


def _check_reference(ref: hcl.Reference, config: hcl.Config,
                     outputs: dict[str, list[str]], where: str) -> list[str]:
    shown = f"{'data.' if ref.data else ''}{ref.type}.{ref.name}"
    if not config.declared(ref):
        return [f"[schema] {where}: refers to {shown}, which is not declared"]
    if ref.attr is None or ref.type not in outputs:
        return []
    if normalise(ref.attr) not in outputs[ref.type]:
        return [f"[schema] {where}: {shown} has no attribute {ref.attr!r}"]
    return []


def _is_block(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _suggest(name: str, known: Any) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
