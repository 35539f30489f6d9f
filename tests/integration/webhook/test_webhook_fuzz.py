"""Hypothesis fuzz of the webhook: arbitrary methods, headers and bodies.

Never a 5xx (Firestore and the queue are up, so the one specified 5xx,
enqueue failure, cannot happen), never a recorded request or a queued task
for input that does not carry a valid token for a known channel.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions.intake import channel_tokens
from tests.integration.webhook.conftest import KEYS, WebhookWorld

HEADER_NAMES = ["X-Goog-Channel-ID", "X-Goog-Resource-State", "X-Goog-Resource-ID",
                "X-Goog-Message-Number", "X-Goog-Channel-Token", "X-Goog-Channel-Expiration",
                "Content-Type", "X-Other"]
text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255,
                                      blacklist_characters="\x7f"), max_size=80)
values = st.one_of(
    text,
    st.sampled_from(["ch-1", "ch-2", "../ch-1", "__x__", "a/b", "sync", "exists", "not_exists",
                     "res-1", "1", "-5", "99999999999999999999999", "v1.k1.", "", " "]),
)
methods = st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(method=methods, headers=st.dictionaries(st.sampled_from(HEADER_NAMES), values),
       body=st.binary(max_size=200))
def test_arbitrary_requests_never_5xx_and_never_record(
    webhook_world: WebhookWorld, method: str, headers: dict[str, str], body: bytes
) -> None:
    webhook_world.open_channel()  # ch-1 exists; no valid token is ever generated below
    webhook_world.open_channel("ch-2", resource_id=None, state="pending")
    response = webhook_world.client.open("/", method=method, headers=headers, data=body)
    assert response.status_code < 500, (response.status_code, response.data)
    assert webhook_world.subscription_doc().get("requested_gen", 0) == 0


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(state=values, resource=values, number=values)
def test_valid_token_with_fuzzed_headers_never_5xx(
    webhook_world: WebhookWorld, state: str, resource: str, number: str
) -> None:
    webhook_world.open_channel()
    headers = {"X-Goog-Channel-ID": "ch-1", "X-Goog-Channel-Token":
               channel_tokens.sign("ch-1", KEYS), "X-Goog-Resource-State": state,
               "X-Goog-Resource-ID": resource, "X-Goog-Message-Number": number}
    response = webhook_world.client.post("/", headers=headers)
    assert response.status_code < 500, (response.status_code, response.data)
    accepted = (state.strip() in ("exists", "not_exists") and resource.strip() == "res-1"
                and number.strip().isdigit() and number.strip().isascii())
    if not accepted:
        assert response.status_code in (400, 403) or state.strip() == "sync"
