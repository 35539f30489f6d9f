"""The .jsii -> schema conversion, on a miniature assembly shaped like the real one."""

from __future__ import annotations

from typing import Any

from infra.tfcheck import schema_cache

LINK = "Docs at Terraform Registry: {@link https://registry.terraform.io/providers/hashicorp/google/6.50.0/docs/resources/thing"  # noqa: E501


def _prop(name: str, hcl: str, type_: dict[str, Any], optional: bool = True) -> dict[str, Any]:
    return {"name": name, "optional": optional, "type": type_,
            "docs": {"remarks": f"{LINK}#{hcl} Thing#{hcl}}}"}}


ASSEMBLY: dict[str, Any] = {"types": {
    "@cdktf/provider-google.thing.Thing": {
        "kind": "class", "base": "cdktf.TerraformResource",
        "docs": {"summary": "Represents a {@link https://registry.terraform.io/providers/"
                            "hashicorp/google/6.50.0/docs/resources/thing google_thing}."},
        "initializer": {"parameters": [
            {"name": "config", "type": {"fqn": "@cdktf/provider-google.thing.ThingConfig"}}]},
        "properties": [{"name": "selfLink", "type": {"primitive": "string"}},
                       {"name": "nameInput", "type": {"primitive": "string"}}],
    },
    "@cdktf/provider-google.thing.ThingConfig": {
        "kind": "interface", "datatype": True, "properties": [
            _prop("name", "name", {"primitive": "string"}, optional=False),
            _prop("labels", "labels", {"collection": {"kind": "map",
                                                      "elementtype": {"primitive": "string"}}}),
            _prop("rateLimits", "rate_limits",
                  {"fqn": "@cdktf/provider-google.thing.ThingRateLimits"}),
            _prop("rule", "rule", {"union": {"types": [
                {"fqn": "cdktf.IResolvable"},
                {"collection": {"kind": "array", "elementtype": {
                    "fqn": "@cdktf/provider-google.thing.ThingRateLimits"}}}]}},
                optional=False),
        ]},
    "@cdktf/provider-google.thing.ThingRateLimits": {
        "kind": "interface", "datatype": True, "properties": [
            _prop("maxDispatchesPerSecond", "max_dispatches_per_second",
                  {"primitive": "number"})]},
}}


def test_convert_reads_attributes_blocks_and_outputs() -> None:
    schema = schema_cache.convert(ASSEMBLY)
    struct = schema["structs"][schema["resources"]["google_thing"]]
    assert struct["attributes"] == {"name": True, "labels": False}
    assert struct["blocks"] == {
        "rate_limits": {"struct": "thing.ThingRateLimits", "required": False, "list": False},
        "rule": {"struct": "thing.ThingRateLimits", "required": True, "list": True},
    }
    assert schema["structs"]["thing.ThingRateLimits"]["attributes"] == {
        "max_dispatches_per_second": False}
    assert "selflink" in schema["outputs"]["google_thing"]
    assert "nameinput" not in schema["outputs"]["google_thing"]
