"""The HCL reader expands `for_each` over local maps, so checks see each grant."""

from __future__ import annotations

from pathlib import Path

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
