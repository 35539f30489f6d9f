"""The HCL reader expands `for_each` over local maps, so checks see each grant."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import hcl2
import pytest

from infra.tfcheck import hcl

CONFIG = '''
locals {
  grants = {
    "webhook/worker_invoker" = { account = "webhook", target = "worker_invoker" }
    "renewer/renewer_invoker" = { account = "renewer", target = "renewer_invoker" }
  }
}

resource "google_service_account_iam_member" "act_as" {
  for_each = local.grants

  service_account_id = google_service_account.this[each.value.target].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.this[each.value.account].member
  description        = "${each.key} as ${each.value.account}"
}

resource "google_service_account_iam_member" "opaque" {
  for_each = { for k, v in local.grants : k => v }

  service_account_id = google_service_account.this[each.value.target].name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.this[each.value.account].member
}
'''


def test_for_each_over_a_local_map_is_expanded(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(CONFIG)
    config = hcl.load(tmp_path)
    instances = config.resources("google_service_account_iam_member")
    expanded = [i for i in instances if i.name == "act_as"]
    assert [i.address for i in expanded] == [
        'google_service_account_iam_member.act_as["webhook/worker_invoker"]',
        'google_service_account_iam_member.act_as["renewer/renewer_invoker"]',
    ]
    first = expanded[0]
    assert hcl.single_reference(first.body["member"], "google_service_account") == "webhook"
    assert hcl.single_reference(first.body["service_account_id"],
                                "google_service_account") == "worker_invoker"
    assert first.body["description"] == '${"webhook/worker_invoker"} as ${"webhook"}'


def test_a_computed_for_each_stays_one_unexpanded_block(tmp_path: Path) -> None:
    (tmp_path / "main.tf").write_text(CONFIG)
    config = hcl.load(tmp_path)
    opaque = [i for i in config.resources("google_service_account_iam_member")
              if i.name == "opaque"]
    assert len(opaque) == 1 and opaque[0].key is None
    # Its member resolves only to the resource name ("this"), which is no
    # account of the matrix: the IAM check reports it rather than guessing.
    assert hcl.single_reference(opaque[0].body["member"], "google_service_account") == "this"


def test_a_file_is_parsed_once_per_content_and_again_when_it_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The broken-copy checks load many copies of terraform/ differing in one file:
    # the unchanged files must not be parsed again, a changed one must be.
    parsed: list[str] = []
    real_loads = hcl2.loads

    def counting_loads(text: str, **kwargs: Any) -> Any:
        parsed.append(text)
        return real_loads(text, **kwargs)

    monkeypatch.setattr(hcl2, "loads", counting_loads)
    monkeypatch.setattr(hcl2.api, "loads", counting_loads)  # what hcl2.load calls
    unique = f"# {uuid.uuid4()}\n"  # content no earlier test parsed
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
        (directory / "main.tf").write_text(unique + CONFIG)
        (directory / "extra.tf").write_text(unique + 'locals {\n  n = 1\n}\n')
    hcl.load(first)
    assert len(parsed) == 2
    (second / "extra.tf").write_text(unique + 'locals {\n  n = 2\n}\n')
    config = hcl.load(second)
    assert len(parsed) == 3 and parsed[-1].endswith("n = 2\n}\n")
    assert config.locals["n"] == 2
    # What one caller does to its values is not seen by the next.
    config.locals["grants"].clear()
    assert hcl.load(first).locals["grants"] and len(parsed) == 3
