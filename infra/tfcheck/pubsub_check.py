"""Pub/Sub rules for terraform/ (DESIGN.md, "Delivery (outbox)" and "Apply-time facts").

- exactly the functions whose code publishes (`publishers`: today the worker;
  the renewer's outbox sweep only enqueues publishing runs) may publish, on
  the topic their CALSYNC_PUBSUB_TOPIC names and nowhere else; the one
  exemption is Google's Pub/Sub service agent (`iam_check.PUBSUB_AGENT`), by
  name, on a dead-letter topic: dead-lettering is the agent publishing there;
- every dead-letter topic has a subscription (else what is dead-lettered is
  dropped), is not the changes topic, and the agent may publish to it;
- every subscription on the changes topic delivers in order, retries with a
  backoff and dead-letters, and the agent is subscriber on it (it
  acknowledges what it forwards); a push subscription authenticates with an
  OIDC token of the dedicated push account, for which the agent may mint
  tokens; no subscription expires for inactivity; the topic keeps messages
  for a set retention;
- a subscriber role (a consumer's) is granted on one subscription, never on a
  topic (that lets its holder attach subscriptions of its own) or project-wide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.tfcheck import hcl, publishers
from infra.tfcheck.iam_check import FUNCTION, PUBSUB_AGENT, SERVICE_ACCOUNT, Grant, grants

TOPIC = "google_pubsub_topic"
SUBSCRIPTION = "google_pubsub_subscription"
TOPIC_VARIABLE = "CALSYNC_PUBSUB_TOPIC"
ROOT = Path(__file__).resolve().parents[2]
PUSH_ACCOUNT = "pubsub_push"

PUBLISH_ROLES = {"roles/pubsub.publisher", "roles/pubsub.editor", "roles/pubsub.admin"}
SUBSCRIBE_ROLES = {"roles/pubsub.subscriber", "roles/pubsub.editor", "roles/pubsub.admin"}


def publishing_accounts(root: Path = ROOT) -> tuple[str, ...]:
    """The accounts of the functions whose code publishes (`sa:worker`, ...)."""
    from infra.tfcheck.consistency import FUNCTION_ACCOUNTS

    return tuple(sorted(f"sa:{FUNCTION_ACCOUNTS[entry]}"
                        for entry in publishers.publishing_entry_points(root)
                        if entry in FUNCTION_ACCOUNTS))


def check(config: hcl.Config, root: Path = ROOT) -> list[str]:
    found = grants(config)
    topic, problems = changes_topic(config)
    subscriptions = config.resources(SUBSCRIPTION, expand=False)
    dead_letter = {name for s in subscriptions
                   if (name := _ref(s.first("dead_letter_policy", "dead_letter_topic"),
                                    TOPIC)) is not None}
    accounts = publishing_accounts(root)
    if topic is not None and not accounts:
        problems.append(f"[pubsub] no function's code constructs {publishers.PUBLISHER} "
                        "(functions/app.py, reached from functions/entrypoints.py): the "
                        "check cannot tell who publishes; update infra/tfcheck/publishers.py")
    problems += check_publishers(found, topic, dead_letter, accounts)
    problems += check_dead_letter(config, found, topic, dead_letter)
    problems += check_subscriptions(config, found, topic)
    problems += check_subscribers(found, topic, config)
    return problems


def changes_topic(config: hcl.Config) -> tuple[str | None, list[str]]:
    """The topic the functions publish to (their CALSYNC_PUBSUB_TOPIC), and problems."""
    named: dict[str, str | None] = {}
    for function in config.resources(FUNCTION):
        env = function.first("service_config", "environment_variables")
        if isinstance(env, dict) and TOPIC_VARIABLE in env:
            named[function.address] = _ref(env[TOPIC_VARIABLE], TOPIC)
    problems = [f"[pubsub] {where}: {TOPIC_VARIABLE} must name a declared {TOPIC} "
                f"(`{TOPIC}.<name>.name`)"
                for where, topic in sorted(named.items())
                if topic is None or config.resource(TOPIC, topic) is None]
    topics = {t for t in named.values() if t is not None}
    if len(topics) > 1:
        problems.append(f"[pubsub] the functions publish to different topics: "
                        f"{', '.join(sorted(topics))}")
    if not named:
        return None, []
    topic = min(topics) if topics else None
    block = config.resource(TOPIC, topic) if topic else None
    if block is not None and not block.body.get("message_retention_duration"):
        problems.append(f"[pubsub] {block.address}: message_retention_duration is not set "
                        "(consumers could not seek back and replay)")
    return topic, problems


def check_publishers(found: list[Grant], topic: str | None, dead_letter: set[str],
                     accounts: tuple[str, ...]) -> list[str]:
    problems: list[str] = []
    allowed = {(f"topic:{topic}", member) for member in accounts}
    allowed |= {(f"topic:{name}", PUBSUB_AGENT) for name in dead_letter}
    for grant in found:
        if grant.role not in PUBLISH_ROLES or (grant.scope, grant.member) in allowed:
            continue
        why = "" if grant.scope != f"topic:{topic}" else (
            f" ({grant.member} runs no code that publishes)")
        problems.append(
            f"[pubsub] {grant.address}: {grant.member} may publish ({grant.role}) on "
            f"{grant.scope}{why}; only {', '.join(accounts) or 'no function'} publish, on "
            f"topic:{topic}, and the Pub/Sub service agent on a dead-letter topic")
    if topic is not None:
        have = {g.member for g in found if g.role in PUBLISH_ROLES
                and g.scope == f"topic:{topic}"}
        for member in accounts:
            if member not in have:
                problems.append(f"[pubsub] {member} may not publish to topic:{topic}: its "
                                "outbox would never be delivered")
    return problems


def check_dead_letter(config: hcl.Config, found: list[Grant], topic: str | None,
                      dead_letter: set[str]) -> list[str]:
    problems: list[str] = []
    subscribed = {_ref(s.body.get("topic"), TOPIC)
                  for s in config.resources(SUBSCRIPTION, expand=False)}
    agent_publishes = {g.scope for g in found
                       if g.member == PUBSUB_AGENT and g.role in PUBLISH_ROLES}
    for name in sorted(dead_letter):
        if config.resource(TOPIC, name) is None:
            problems.append(f"[pubsub] dead-letter topic {TOPIC}.{name} is not declared")
            continue
        if name == topic:
            problems.append(f"[pubsub] {TOPIC}.{name} is both the changes topic and the "
                            "dead-letter topic: refused messages would be redelivered forever")
        if name not in subscribed:
            problems.append(f"[pubsub] dead-letter topic {TOPIC}.{name} has no subscription: "
                            "what is dead-lettered is dropped")
        if f"topic:{name}" not in agent_publishes:
            problems.append(f"[pubsub] the Pub/Sub service agent may not publish to the "
                            f"dead-letter topic {TOPIC}.{name}: dead-lettering would fail")
    return problems


def check_subscriptions(config: hcl.Config, found: list[Grant],
                        topic: str | None) -> list[str]:
    problems: list[str] = []
    agent_subscribes = {g.scope for g in found
                        if g.member == PUBSUB_AGENT and g.role in SUBSCRIBE_ROLES}
    token_creators = {(g.scope, g.member) for g in found
                      if g.role == "roles/iam.serviceAccountTokenCreator"}
    for sub in config.resources(SUBSCRIPTION, expand=False):
        where = f"[pubsub] {sub.address}"
        if sub.first("expiration_policy", "ttl") != "":
            problems.append(f'{where}: set expiration_policy {{ ttl = "" }}; by default a '
                            "subscription is deleted after 31 days without activity")
        if topic is None or _ref(sub.body.get("topic"), TOPIC) != topic:
            continue
        if sub.body.get("enable_message_ordering") is not True:
            problems.append(f"{where}: enable_message_ordering must be true (a subscription's "
                            "entries are delivered in seq order)")
        if "retry_policy" not in sub.body:
            problems.append(f"{where}: no retry_policy (refused messages would be "
                            "redelivered at once, without backoff)")
        policy = (sub.body.get("dead_letter_policy") or [None])[0]
        if not isinstance(policy, dict) or not policy.get("dead_letter_topic") \
                or policy.get("max_delivery_attempts") is None:
            problems.append(f"{where}: no dead_letter_policy with dead_letter_topic and "
                            "max_delivery_attempts (a message refused forever would stall "
                            "every later entry of its subscription)")
        elif f"subscription:{sub.name}" not in agent_subscribes:
            problems.append(f"{where}: the Pub/Sub service agent is not subscriber on it, "
                            "so it cannot forward to the dead-letter topic")
        if "push_config" in sub.body:
            problems += _push_problems(sub, where, token_creators)
    return problems


def _push_problems(sub: hcl.Block, where: str,
                   token_creators: set[tuple[str, str]]) -> list[str]:
    email = sub.first("push_config", "oidc_token", "service_account_email")
    if email is None:
        return [f"{where}: push_config has no oidc_token: the consumer could not tell "
                "Pub/Sub's pushes from anyone else's"]
    account = hcl.single_reference(email, SERVICE_ACCOUNT)
    if account != PUSH_ACCOUNT:
        return [f"{where}: the push OIDC token must be minted for the dedicated "
                f'google_service_account.this["{PUSH_ACCOUNT}"], not {email!r}']
    if (f"service_account:{PUSH_ACCOUNT}", PUBSUB_AGENT) not in token_creators:
        return [f"{where}: the Pub/Sub service agent needs "
                f"roles/iam.serviceAccountTokenCreator on service_account:{PUSH_ACCOUNT} "
                "to mint the push tokens"]
    return []


def check_subscribers(found: list[Grant], topic: str | None,
                      config: hcl.Config) -> list[str]:
    consumer = {f"subscription:{s.name}" for s in config.resources(SUBSCRIPTION, expand=False)
                if topic is not None and _ref(s.body.get("topic"), TOPIC) == topic}
    problems: list[str] = []
    for grant in found:
        if grant.role not in SUBSCRIBE_ROLES or (
                grant.role in PUBLISH_ROLES and grant.scope.startswith("topic:")):
            continue  # editor/admin on a topic: check_publishers reports it
        if not grant.scope.startswith("subscription:"):
            problems.append(f"[pubsub] {grant.address}: {grant.role} for {grant.member} on "
                            f"{grant.scope}; a consumer is granted it on its own subscription "
                            "only, never on a topic or the project")
        elif grant.scope not in consumer:
            problems.append(f"[pubsub] {grant.address}: {grant.role} on {grant.scope}, which "
                            f"is not a subscription to topic:{topic}")
    return problems


def _ref(value: Any, type_: str) -> str | None:
    return hcl.single_reference(value, type_) if value is not None else None
