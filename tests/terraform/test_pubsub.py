"""Pub/Sub delivery and the outbox sweep's index in terraform/, each rule proven to bite.

The checks (infra/tfcheck/pubsub_check.py, firestore_check.py, apis.py,
iam_check.py) run through `consistency.check` on terraform/ itself, then on
broken copies: each breakage must be reported with the message given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from functions.adapters.firestore import catalogue
from infra.tfcheck import consistency, firestore_check, hcl, iam_check, publishers, pubsub_check

from .conftest import ROOT

Edit = tuple[str, str, str]


def _append(text: str) -> Edit:
    return ("extra.tf", "", text)


def _resource(type_: str, name: str, body: str) -> Edit:
    return _append(f'resource "{type_}" "{name}" {{\n{body}\n}}\n')


def _topic_grant(topic: str, role: str, member: str) -> Edit:
    return _resource("google_pubsub_topic_iam_member", "extra",
                     f"  topic  = google_pubsub_topic.{topic}.name\n"
                     f'  role   = "{role}"\n  member = {member}')


SA = 'google_service_account.this["{}"].member'
APP = '"serviceAccount:app@example-app.iam.gserviceaccount.com"'

PUSH_ORDERING = ("  enable_message_ordering    = true\n"
                 "  ack_deadline_seconds       = var.pubsub_ack_deadline_seconds\n"
                 '  message_retention_duration = "604800s"\n\n  push_config {')
PUSH_OIDC = ("    oidc_token {\n"
             '      service_account_email = google_service_account.this["pubsub_push"].email\n'
             "      audience              = local.push_audience\n    }\n")
DLP = ("  dead_letter_policy {\n"
       "    dead_letter_topic     = google_pubsub_topic.dead_letter.id\n"
       "    max_delivery_attempts = var.pubsub_max_delivery_attempts\n  }\n\n")
PUSH_TAIL = ('  expiration_policy {\n    ttl = ""\n  }\n\n'
             "  depends_on = [google_service_account_iam_member.pubsub_token_creator]")
RETRY = ("  retry_policy {\n"
         '    minimum_backoff = "${var.pubsub_min_backoff_seconds}s"\n'
         '    maximum_backoff = "${var.pubsub_max_backoff_seconds}s"\n  }\n\n')
PUSH_RETRY = "    }\n  }\n\n" + RETRY
DL_SUBSCRIPTION_EXPIRY = ('  ack_deadline_seconds       = 60\n\n'
                          "  # Never deleted for inactivity (the default is 31 days without a "
                          'pull).\n  expiration_policy {\n    ttl = ""\n  }\n')
GROUP_INDEX = '      order       = "ASCENDING"\n      query_scope = "COLLECTION_GROUP"'
DESCENDING_INDEX = ('    indexes {\n      order       = "DESCENDING"\n'
                    '      query_scope = "COLLECTION"\n    }\n')

BREAKAGES: dict[str, tuple[list[Edit], str]] = {
    # --- only the functions whose code publishes (the worker), on the changes topic
    "the api may publish": (
        [_topic_grant("changes", "roles/pubsub.publisher", SA.format("api"))],
        "sa:api may publish (roles/pubsub.publisher) on topic:changes"),
    "publisher granted project-wide": (
        [_resource("google_project_iam_member", "extra",
                   '  project = var.project\n  role    = "roles/pubsub.publisher"\n'
                   f"  member  = {SA.format('worker')}")],
        "sa:worker may publish (roles/pubsub.publisher) on project"),
    "editor on the topic": (
        [_topic_grant("changes", "roles/pubsub.editor", SA.format("webhook"))],
        "sa:webhook may publish (roles/pubsub.editor) on topic:changes"),
    "the worker may not publish": (
        [("pubsub.tf", '    worker = "worker"\n', "")],
        "sa:worker may not publish to topic:changes"),
    "the renewer may publish though its code never does": (
        [_topic_grant("changes", "roles/pubsub.publisher", SA.format("renewer"))],
        "sa:renewer may publish (roles/pubsub.publisher) on topic:changes (sa:renewer runs "
        "no code that publishes)"),
    "the service agent publishes to the changes topic": (
        [_topic_grant("changes", "roles/pubsub.publisher", "local.pubsub_service_agent")],
        "agent:pubsub may publish (roles/pubsub.publisher) on topic:changes"),
    "someone else publishes to the dead-letter topic": (
        [_topic_grant("dead_letter", "roles/pubsub.publisher", SA.format("renewer"))],
        "sa:renewer may publish (roles/pubsub.publisher) on topic:dead_letter"),
    "the functions publish to a topic typed by hand": (
        [("functions.tf", "CALSYNC_PUBSUB_TOPIC            = google_pubsub_topic.changes.name",
          'CALSYNC_PUBSUB_TOPIC            = "calsync-changes"')],
        "CALSYNC_PUBSUB_TOPIC must name a declared google_pubsub_topic"),
    "the renewer does not know the topic": (
        [("functions.tf",
          "        CALSYNC_PUBSUB_TOPIC         = google_pubsub_topic.changes.name\n", "")],
        'this["renewer"]: CALSYNC_PUBSUB_TOPIC is read by renew_channels but not set'),
    "topic without retention": (
        [("pubsub.tf", '  name    = local.pubsub_topic_id\n\n'
          "  # Lets a consumer seek back (replay) after losing messages it acknowledged.\n"
          '  message_retention_duration = "${var.pubsub_message_retention_seconds}s"\n',
          "  name    = local.pubsub_topic_id\n")],
        "google_pubsub_topic.changes: message_retention_duration is not set"),
    # --- dead-lettering works and keeps what it catches
    "dead-letter topic without a subscription": (
        [("pubsub.tf", "  topic   = google_pubsub_topic.dead_letter.id",
          "  topic   = google_pubsub_topic.parking.id"),
         _resource("google_pubsub_topic", "parking",
                   '  name       = "parking"\n  depends_on = [google_project_service.enabled]')],
        "dead-letter topic google_pubsub_topic.dead_letter has no subscription: what is "
        "dead-lettered is dropped"),
    "dead-lettering into the changes topic": (
        [("pubsub.tf", "dead_letter_topic     = google_pubsub_topic.dead_letter.id",
          "dead_letter_topic     = google_pubsub_topic.changes.id")],
        "google_pubsub_topic.changes is both the changes topic and the dead-letter topic"),
    "the service agent may not publish dead letters": (
        [("pubsub.tf", '  topic   = google_pubsub_topic.dead_letter.name\n'
          '  role    = "roles/pubsub.publisher"',
          '  topic   = google_pubsub_topic.dead_letter.name\n'
          '  role    = "roles/pubsub.viewer"')],
        "the Pub/Sub service agent may not publish to the dead-letter topic "
        "google_pubsub_topic.dead_letter"),
    "the service agent is not subscriber on the push subscription": (
        [("pubsub.tf", '  subscription = google_pubsub_subscription.push[0].name\n'
          '  role         = "roles/pubsub.subscriber"',
          '  subscription = google_pubsub_subscription.push[0].name\n'
          '  role         = "roles/pubsub.viewer"')],
        "google_pubsub_subscription.push: the Pub/Sub service agent is not subscriber on it"),
    "a subscription that expires": (
        [("pubsub.tf", DL_SUBSCRIPTION_EXPIRY, "  ack_deadline_seconds       = 60\n")],
        "google_pubsub_subscription.dead_letter: set expiration_policy"),
    # --- the push subscription: ordered, authenticated, retried, dead-lettering
    "push without ordering": (
        [("pubsub.tf", PUSH_ORDERING, PUSH_ORDERING.replace("= true", "= false"))],
        "google_pubsub_subscription.push: enable_message_ordering must be true"),
    "pull without ordering": (
        [("pubsub.tf", "  enable_message_ordering    = true\n", "")],
        "google_pubsub_subscription.pull: enable_message_ordering must be true"),
    "push without OIDC": (
        [("pubsub.tf", PUSH_OIDC, "")],
        "google_pubsub_subscription.push: push_config has no oidc_token"),
    "push token minted for a function's account": (
        [("pubsub.tf", 'service_account_email = google_service_account.this["pubsub_push"]',
          'service_account_email = google_service_account.this["worker"]')],
        'the push OIDC token must be minted for the dedicated '
        'google_service_account.this["pubsub_push"]'),
    "the service agent cannot mint push tokens": (
        [("pubsub.tf", "  role               = \"roles/iam.serviceAccountTokenCreator\"\n"
          "  member             = local.pubsub_service_agent",
          "  role               = \"roles/iam.serviceAccountTokenCreator\"\n"
          f"  member             = {SA.format('renewer')}")],
        "the Pub/Sub service agent needs roles/iam.serviceAccountTokenCreator on "
        "service_account:pubsub_push"),
    "push without a dead-letter policy": (
        [("pubsub.tf", DLP + PUSH_TAIL, PUSH_TAIL)],
        "google_pubsub_subscription.push: no dead_letter_policy"),
    "push without a retry policy": (
        [("pubsub.tf", PUSH_RETRY, "    }\n  }\n\n")],
        "google_pubsub_subscription.push: no retry_policy"),
    # --- a consumer subscribes on its own subscription only
    "consumer subscriber on the topic": (
        [_topic_grant("changes", "roles/pubsub.subscriber", APP)],
        "a consumer is granted it on its own subscription only, never on a topic or the "
        "project"),
    "consumer subscriber project-wide": (
        [_resource("google_project_iam_member", "extra",
                   '  project = var.project\n  role    = "roles/pubsub.subscriber"\n'
                   f"  member  = {APP}")],
        "roles/pubsub.subscriber for serviceAccount:app@example-app.iam.gserviceaccount.com "
        "on project"),
    "consumer subscriber on the dead-letter subscription": (
        [("pubsub.tf", "  subscription = google_pubsub_subscription.pull[0].name\n"
          '  role         = "roles/pubsub.subscriber"\n  member       = each.value',
          "  subscription = google_pubsub_subscription.dead_letter.name\n"
          '  role         = "roles/pubsub.subscriber"\n  member       = each.value')],
        "roles/pubsub.subscriber on subscription:dead_letter, which is not a subscription "
        "to topic:changes"),
    # --- every Pub/Sub resource waits for its API
    "topics before the Pub/Sub API": (
        [("pubsub.tf", '  depends_on = [google_project_service.enabled["pubsub.googleapis.com"]]\n',
          "")],
        "google_pubsub_topic.changes does not wait for pubsub.googleapis.com"),
    "Pub/Sub API not enabled": (
        [("apis.tf", '    "pubsub.googleapis.com",\n', "")],
        "needs pubsub.googleapis.com, which apis.tf does not enable"),
    "agent grants before the IAM API": (
        [("pubsub.tf", '  depends_on = [google_project_service.enabled["iam.googleapis.com"]]\n',
          "")],
        "google_pubsub_topic_iam_member.dead_letter_agent does not wait for iam.googleapis.com"),
    # --- the outbox sweep's collection-group index (catalogue.COLLECTION_GROUP_QUERIES)
    "collection-group index missing": (
        [("firestore.tf", GROUP_INDEX, GROUP_INDEX.replace("COLLECTION_GROUP", "COLLECTION"))],
        "no COLLECTION_GROUP ASCENDING index on state/publish_pending_since"),
    "collection-group index on another field": (
        [("firestore.tf", 'field = "publish_pending_since" }', 'field = "published_seq" }')],
        "no COLLECTION_GROUP ASCENDING index on state/publish_pending_since"),
    "override drops a collection-scope index": (
        [("firestore.tf", DESCENDING_INDEX, "")],
        "overrides the indexes of state/publish_pending_since without its COLLECTION "
        "DESCENDING index"),
}


def test_real_configuration_passes_the_pubsub_rules(real_config: hcl.Config) -> None:
    assert pubsub_check.check(real_config) == []
    assert firestore_check.check_collection_groups(
        real_config, catalogue.COLLECTION_GROUP_QUERIES) == []


def test_who_publishes_is_read_from_the_code() -> None:
    """The worker's runs publish; the renewer's outbox sweep only enqueues runs."""
    assert publishers.publishing_entry_points(ROOT) == {"sync_worker"}
    assert pubsub_check.publishing_accounts(ROOT) == ("sa:worker",)


def test_a_renewer_that_publishes_needs_the_role(
    real_config: hcl.Config, broken_code: Callable[..., Path]
) -> None:
    """Were the renewer's builder to construct a publisher, it would need the grant."""
    root = broken_code(("app.py", "    continue_later = queue.enqueue_renewal if "
                        "config.renewer_url else None\n",
                        "    continue_later = queue.enqueue_renewal if "
                        "config.renewer_url else None\n    outbox(config)\n"))
    assert pubsub_check.publishing_accounts(root) == ("sa:renewer", "sa:worker")
    found = pubsub_check.check(real_config, root)
    assert "[pubsub] sa:renewer may not publish to topic:changes: its outbox would never be " \
           "delivered" in found, found


def test_unknown_publishing_code_is_reported(
    real_config: hcl.Config, broken_code: Callable[..., Path]
) -> None:
    """Publishing moved where the reader does not look: said, never passed silently."""
    root = broken_code(("app.py", "    from functions.adapters.google.pubsub import "
                        "PubSubPublisher\n", ""),
                       ("app.py", "PubSubPublisher(config.project, config.pubsub_topic,",
                        "(lambda *args, **kwargs: None)(config.project, config.pubsub_topic,"))
    found = pubsub_check.check(real_config, root)
    assert any("no function's code constructs PubSubPublisher" in p for p in found), found


def test_the_service_agent_is_recognised_by_name(real_config: hcl.Config) -> None:
    agent = {g.address: g.key() for g in iam_check.grants(real_config)
             if g.member == iam_check.PUBSUB_AGENT}
    assert agent == {
        "google_pubsub_topic_iam_member.dead_letter_agent":
            ("topic:dead_letter", "roles/pubsub.publisher", "agent:pubsub"),
        "google_pubsub_subscription_iam_member.push_agent":
            ("subscription:push", "roles/pubsub.subscriber", "agent:pubsub"),
        "google_pubsub_subscription_iam_member.pull_agent":
            ("subscription:pull", "roles/pubsub.subscriber", "agent:pubsub"),
        "google_service_account_iam_member.pubsub_token_creator":
            ("service_account:pubsub_push", "roles/iam.serviceAccountTokenCreator",
             "agent:pubsub"),
    }


def test_another_google_agent_is_not_the_pubsub_agent(
    load_broken: Callable[..., hcl.Config],
) -> None:
    config = load_broken(_topic_grant(
        "dead_letter", "roles/pubsub.publisher",
        '"serviceAccount:service-1@gcp-sa-cloudscheduler.iam.gserviceaccount.com"'))
    found = pubsub_check.check(config)
    assert any("service-1@gcp-sa-cloudscheduler.iam.gserviceaccount.com may publish" in p
               for p in found), found


def test_a_new_collection_group_query_needs_its_index(real_config: hcl.Config) -> None:
    found = firestore_check.check_collection_groups(
        real_config, [*catalogue.COLLECTION_GROUP_QUERIES, ("changes", "seq")])
    assert found == ["[firestore] no COLLECTION_GROUP ASCENDING index on changes/seq "
                     "(catalogue.COLLECTION_GROUP_QUERIES): a google_firestore_field with "
                     "index_config.indexes of query_scope COLLECTION_GROUP"]


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_pubsub_rule_fails_on_broken_copy(
    name: str, load_broken: Callable[..., hcl.Config]
) -> None:
    edits, expected = BREAKAGES[name]
    found = consistency.check(load_broken(*edits), ROOT)
    assert any(expected in problem for problem in found), found
