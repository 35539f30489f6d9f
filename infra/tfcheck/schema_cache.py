"""Fetch the google provider's schema once and cache it outside the repository.

The npm package `@cdktf/provider-google` carries the provider's whole schema in
its `.jsii` type assembly: one config struct per resource and data source, one
struct per nested block, and each property's Terraform (HCL) name in the
registry link of its docs. `ensure()` downloads the package with npm, turns the
assembly into a small JSON schema and keeps only that.

Standard library only: the set-up script calls `ensure()` before any
virtualenv exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

NPM_PACKAGE = "@cdktf/provider-google"
NPM_VERSION = "16.12.1"
PROVIDER_VERSION = "6.50.0"
FORMAT = 1  # bump when the layout of the cached schema changes

_LINK = re.compile(
    r"registry\.terraform\.io/providers/hashicorp/google/[\d.]+/docs/"
    r"(?P<kind>resources|data-sources)/(?P<page>[a-z0-9_]+)(?:#(?P<anchor>[a-z0-9_]+))?"
)


class SchemaCacheError(RuntimeError):
    """The schema is not cached and could not be fetched; the message says why."""


def cache_dir() -> Path:
    """`$CALSYNC_CACHE_DIR`, else `$XDG_CACHE_HOME/calsync`, else `~/.cache/calsync`."""
    explicit = os.environ.get("CALSYNC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "calsync"


def schema_path() -> Path:
    return cache_dir() / f"provider-google-{PROVIDER_VERSION}.schema.json"


def load() -> dict[str, Any]:
    """The cached schema; raises SchemaCacheError naming the set-up step if absent."""
    path = schema_path()
    try:
        schema: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise SchemaCacheError(
            f"the google provider {PROVIDER_VERSION} schema is not cached at {path} ({err}); "
            "run the set-up (`python infra/bootstrap.py`, part of `make test`) or "
            "`python -m infra.tfcheck.schema_cache` to fetch it with npm"
        ) from err
    if schema.get("format") != FORMAT or schema.get("provider_version") != PROVIDER_VERSION:
        raise SchemaCacheError(f"{path} is stale; delete it and re-run the set-up")
    return schema


def ensure() -> Path:
    """Make sure the schema is cached; exit with a clear message if it cannot be."""
    path = schema_path()
    try:
        load()
        print(f"[setup] google provider {PROVIDER_VERSION} schema: cached", flush=True)
        return path
    except SchemaCacheError:
        pass
    print(f"[setup] fetching {NPM_PACKAGE}@{NPM_VERSION} for the provider schema", flush=True)
    try:
        fetch(path)
    except SchemaCacheError as err:
        sys.exit(f"[setup] {err}")
    return path


def fetch(path: Path) -> None:
    """Download the npm package, convert its `.jsii` assembly, write `path` atomically."""
    npm = shutil.which("npm")
    if npm is None:
        raise SchemaCacheError("npm is not on PATH: install Node.js 18+ (apt-get install npm)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        result = subprocess.run(
            [npm, "pack", f"{NPM_PACKAGE}@{NPM_VERSION}", "--pack-destination", tmp,
             "--silent"],
            capture_output=True, text=True, cwd=tmp, timeout=600,
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise SchemaCacheError(
                f"npm pack {NPM_PACKAGE}@{NPM_VERSION} failed:\n{result.stderr.strip()}")
        with tarfile.open(tarballs[0]) as archive:
            member = archive.extractfile("package/.jsii")
            if member is None:
                raise SchemaCacheError(f"{tarballs[0].name} holds no package/.jsii")
            assembly = json.load(member)
        schema = convert(assembly)
        staged = Path(tmp) / "schema.json"
        staged.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")))
        os.replace(staged, path)


# --- .jsii assembly -> schema -------------------------------------------------
#
# Cached layout:
#   {"format", "provider_version",
#    "resources": {type: struct}, "data_sources": {type: struct},
#    "structs": {struct: {"attributes": {hcl: required?},
#                         "blocks": {hcl: {"struct", "required", "list"}}}},
#    "outputs": {type: [normalised attribute names readable on the resource]}}
# Output names are normalised (lower case, no underscores) because the
# assembly spells them in camelCase without a registry link.


def normalise(name: str) -> str:
    return name.replace("_", "").lower()


def convert(assembly: dict[str, Any]) -> dict[str, Any]:
    types: dict[str, dict[str, Any]] = assembly["types"]
    structs: dict[str, Any] = {}
    resources: dict[str, str] = {}
    data_sources: dict[str, str] = {}
    outputs: dict[str, list[str]] = {}
    for spec in types.values():
        if spec.get("kind") != "class" or spec.get("base") not in (
            "cdktf.TerraformResource", "cdktf.TerraformDataSource"
        ):
            continue
        match = _LINK.search(spec.get("docs", {}).get("summary", ""))
        params = spec.get("initializer", {}).get("parameters", [])
        config = next((p["type"].get("fqn") for p in params if p["name"] == "config"), None)
        if match is None or config is None:
            continue
        tf_type = "google_" + match["page"]
        target = resources if match["kind"] == "resources" else data_sources
        target[tf_type] = _struct(config, types, structs)
        outputs[tf_type] = sorted({
            normalise(p["name"]) for p in spec.get("properties", [])
            if not p.get("static") and not p["name"].endswith("Input")
        } | set(_all_names(config, types)))
    return {
        "format": FORMAT, "provider_version": PROVIDER_VERSION,
        "resources": resources, "data_sources": data_sources,
        "structs": structs, "outputs": outputs,
    }


def _all_names(fqn: str, types: dict[str, dict[str, Any]]) -> list[str]:
    return [normalise(_hcl_name(p)) for p in types[fqn].get("properties", [])]


def _struct(fqn: str, types: dict[str, dict[str, Any]], structs: dict[str, Any]) -> str:
    key = fqn.split("@cdktf/provider-google.", 1)[-1]
    if key in structs:
        return key
    structs[key] = {}  # placeholder: guards against recursive structs
    attributes: dict[str, bool] = {}
    blocks: dict[str, dict[str, Any]] = {}
    for prop in types[fqn].get("properties", []):
        name = _hcl_name(prop)
        required = not prop.get("optional", False)
        nested, is_list = _block_type(prop["type"], types)
        if nested is None:
            attributes[name] = required
        else:
            blocks[name] = {"struct": _struct(nested, types, structs),
                            "required": required, "list": is_list}
    structs[key] = {"attributes": attributes, "blocks": blocks}
    return key


def _hcl_name(prop: dict[str, Any]) -> str:
    docs = prop.get("docs", {})
    for text in (docs.get("remarks", ""), docs.get("summary", "")):
        match = _LINK.search(text)
        if match and match["anchor"]:
            return match["anchor"]
    return re.sub(r"(?<!^)(?=[A-Z])", "_", prop["name"]).lower()


def _block_type(
    type_ref: dict[str, Any], types: dict[str, dict[str, Any]]
) -> tuple[str | None, bool]:
    """(struct fqn, is a list) when the property is a nested block, else (None, False)."""
    if "fqn" in type_ref:
        return (type_ref["fqn"], False) if _is_struct(type_ref["fqn"], types) else (None, False)
    if "collection" in type_ref:
        element = type_ref["collection"]["elementtype"]
        if type_ref["collection"]["kind"] == "array" and "fqn" in element \
                and _is_struct(element["fqn"], types):
            return element["fqn"], True
        return None, False
    if "union" in type_ref:
        for member in type_ref["union"]["types"]:
            nested, is_list = _block_type(member, types)
            if nested is not None:
                return nested, is_list
    return None, False


def _is_struct(fqn: str, types: dict[str, dict[str, Any]]) -> bool:
    spec = types.get(fqn)
    return spec is not None and bool(spec.get("datatype"))


if __name__ == "__main__":
    print(ensure())
