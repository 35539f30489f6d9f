"""Firestore in terraform/ against functions/catalogue.py.

- every catalogue.QUERIES entry has its composite index;
- every catalogue.INDEX_EXEMPTIONS entry is exempt (a google_firestore_field
  with an empty index_config), and no exemption hits a field some query uses
  (catalogue.queried_fields()): that would make the query fail in production
  while the emulator, which enforces no index, keeps passing;
- the TTL policies (ttl_config) are exactly catalogue.TTL_FIELDS;
- every catalogue.COLLECTION_GROUP_QUERIES field has a single-field index of
  query scope COLLECTION_GROUP (a google_firestore_field override), and an
  override that lists indexes keeps the collection-scope ascending and
  descending ones (listing any index replaces all the automatic ones).
"""

from __future__ import annotations

from typing import Any

from infra.tfcheck import hcl
from infra.tfcheck.queries import normalised

FIELD = "google_firestore_field"


def check(config: hcl.Config) -> list[str]:
    from functions.adapters.firestore import catalogue

    return [
        *check_indexes(config, catalogue.QUERIES),
        *check_fields(config, catalogue.INDEX_EXEMPTIONS, catalogue.TTL_FIELDS,
                      catalogue.queried_fields()),
        *check_collection_groups(config, catalogue.COLLECTION_GROUP_QUERIES),
    ]


def check_indexes(config: hcl.Config, queries: list[dict[str, Any]]) -> list[str]:
    indexes = set()
    for index in config.resources("google_firestore_index"):
        if index.body.get("query_scope", "COLLECTION") != "COLLECTION":
            continue
        indexes.add((str(index.body.get("collection")), tuple(_index_fields(index))))
    return [
        f"[indexes] no composite index for the {collection} query on "
        + ", ".join(f"{path} {order}" for path, order in fields)
        for collection, fields in sorted(normalised(queries) - indexes)
    ]


def _index_fields(index: hcl.Block) -> list[tuple[str, str]]:
    fields = [(str(f.get("field_path")), str(f.get("order", "ASCENDING")))
              for f in index.body.get("fields", [])]
    for dynamic in index.body.get("dynamic", []):
        spec = dynamic.get("fields")
        if spec is None or not isinstance(spec.get("for_each"), list):
            continue
        content = (spec.get("content") or [{}])[0]
        path_attr = _item_attr(content.get("field_path"), "fields")
        order_attr = _item_attr(content.get("order"), "fields")
        for item in spec["for_each"]:
            fields.append((str(item.get(path_attr)),
                           str(item.get(order_attr, "ASCENDING")) if order_attr
                           else "ASCENDING"))
    return fields


def _item_attr(expression: Any, iterator: str) -> str | None:
    text = str(hcl.unquote(expression or ""))
    prefix = f"{iterator}.value."
    return text.removeprefix(prefix) if text.startswith(prefix) else None


def _enabled(block: hcl.Block, name: str) -> bool:
    """A nested block is present: written out, or dynamic over a non-empty list."""
    if name in block.body:
        return True
    for dynamic in block.body.get("dynamic", []):
        spec = dynamic.get(name)
        if spec is None:
            continue
        items = spec.get("for_each")
        if isinstance(items, list):
            return bool(items)
        text = str(items).replace(" ", "")
        if text.startswith("${true?"):
            return _nonempty(text.removeprefix("${true?").split(":")[0])
        if text.startswith("${false?"):
            return _nonempty(text.split(":", 1)[1].removesuffix("}"))
    return False


def _nonempty(literal: str) -> bool:
    return literal.strip() not in ("[]", "")


def check_fields(config: hcl.Config, exemptions: list[tuple[str, str]],
                 ttl_fields: list[tuple[str, str]],
                 queried: set[tuple[str, str]]) -> list[str]:
    problems: list[str] = []
    exempt: set[tuple[str, str]] = set()
    ttl: set[tuple[str, str]] = set()
    seen: dict[tuple[str, str], str] = {}
    for field in config.resources(FIELD):
        key = (str(field.body.get("collection")), str(field.body.get("field")))
        if key in seen:
            problems.append(f"[firestore] {field.address} configures {key[0]}/{key[1]} "
                            f"again ({seen[key]}): Firestore keeps one configuration per field")
        seen[key] = field.address
        index_config = field.body.get("index_config")
        if _enabled(field, "index_config") and not (index_config and index_config[0].get(
                "indexes")):
            exempt.add(key)
        if _enabled(field, "ttl_config"):
            ttl.add(key)
    for collection, name in sorted(set(exemptions) - exempt):
        problems.append(f"[firestore] {collection}/{name} is in catalogue.INDEX_EXEMPTIONS "
                        "but not exempt (google_firestore_field with an empty index_config)")
    for collection, name in sorted(exempt - set(exemptions)):
        problems.append(f"[firestore] {collection}/{name} is exempt from indexing but not in "
                        "catalogue.INDEX_EXEMPTIONS")
    for collection, name in sorted(exempt & queried):
        problems.append(f"[firestore] the exemption of {collection}/{name} removes the index "
                        "a query needs (catalogue.queried_fields())")
    for collection, name in sorted(set(ttl_fields) - ttl):
        problems.append(f"[firestore] {collection}/{name} is in catalogue.TTL_FIELDS but has "
                        "no TTL policy (ttl_config)")
    for collection, name in sorted(ttl - set(ttl_fields)):
        problems.append(f"[firestore] {collection}/{name} has a TTL policy but is not in "
                        "catalogue.TTL_FIELDS")
    return problems


# What Firestore creates by itself for a field, and loses once indexes are listed.
AUTOMATIC = {("ASCENDING", "COLLECTION"), ("DESCENDING", "COLLECTION")}


def check_collection_groups(config: hcl.Config,
                            queries: list[tuple[str, str]]) -> list[str]:
    problems: list[str] = []
    group_indexed: set[tuple[str, str]] = set()
    for field in config.resources(FIELD):
        key = (str(field.body.get("collection")), str(field.body.get("field")))
        listed = _listed_indexes(field)
        if not listed:
            continue
        if ("ASCENDING", "COLLECTION_GROUP") in listed:
            group_indexed.add(key)
        for order, scope in sorted(AUTOMATIC - listed):
            problems.append(f"[firestore] {field.address} overrides the indexes of "
                            f"{key[0]}/{key[1]} without its {scope} {order} index: queries "
                            "on that field inside one collection would fail")
    for collection, name in sorted(set(queries) - group_indexed):
        problems.append(f"[firestore] no COLLECTION_GROUP ASCENDING index on {collection}/"
                        f"{name} (catalogue.COLLECTION_GROUP_QUERIES): a google_firestore_field "
                        "with index_config.indexes of query_scope COLLECTION_GROUP")
    return problems


def _listed_indexes(field: hcl.Block) -> set[tuple[str, str]]:
    """(order, query scope) of each index a field override lists (written out)."""
    config = field.body.get("index_config") or [{}]
    return {(str(index.get("order", "")), str(index.get("query_scope", "COLLECTION")))
            for index in config[0].get("indexes", []) if isinstance(index, dict)}
