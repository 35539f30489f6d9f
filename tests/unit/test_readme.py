"""The README stays true: its configuration table is the one config.py generates."""

from __future__ import annotations

import re
from pathlib import Path

from functions.config import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_table_matches_config_module() -> None:
    text = README.read_text()
    match = re.search(r"<!-- config-table:start -->\n(.*?)<!-- config-table:end -->", text, re.S)
    assert match, "README lost its configuration table markers"
    assert match.group(1).strip() == markdown_table().strip(), (
        "README configuration table is stale: regenerate it with `python -m functions.config`"
    )


def test_quickstart_is_the_two_commands() -> None:
    text = README.read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^make (\w+)", quickstart, re.M)
    assert commands == ["demo", "test"]
    assert (README.parent / ".ci/run").read_text().strip().endswith("make test")
