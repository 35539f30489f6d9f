"""The fake Calendar answers over its quotas exactly as ../shared/calendar-api.md says.

Section 7: per project 10,000 and per user per project 600 requests per minute, in
sliding 60 s windows; over the per-user limit 403 `userRateLimitExceeded` "User Rate
Limit Exceeded", over the project limit 403 (or 429) `rateLimitExceeded` "Rate Limit
Exceeded", both domain `usageLimits`; the per-user limit is checked first; a refused
request does not use up the window; watch and channels.stop are requests too. And
the services see what the real Calendar adapter raises for those answers.
"""

from __future__ import annotations

import random

import pytest

from functions.errors import QuotaExhausted, RateLimited
from functions.model import Subscription
from infra.calendar_emulator.errors import ApiError
from infra.sim.calendar import FakeCalendar, FakeCalendarSettings
from infra.sim.clock import EventLoop, VirtualClock
from infra.sim.ports import SimCalendarPort, SimChannelPort

USER_BODY = {"error": {"errors": [{"domain": "usageLimits", "reason": "userRateLimitExceeded",
                                   "message": "User Rate Limit Exceeded"}],
                       "code": 403, "message": "User Rate Limit Exceeded"}}


def project_body(status: int) -> dict[str, object]:
    return {"error": {"errors": [{"domain": "usageLimits", "reason": "rateLimitExceeded",
                                  "message": "Rate Limit Exceeded"}],
                      "code": status, "message": "Rate Limit Exceeded"}}


def calendar(project: int | None = 10_000, user: int | None = 600,
             status: int = 403) -> FakeCalendar:
    loop = EventLoop(VirtualClock())
    fake = FakeCalendar(loop, FakeCalendarSettings(project_per_minute=project,
                                                   user_per_minute=user,
                                                   project_status=status),
                        random.Random(1), lambda push: None)
    for owner in ("alice", "bob"):
        fake.add_calendar(f"{owner}-cal", owner)
    return fake


def list_once(fake: FakeCalendar, owner: str = "alice") -> None:
    fake.list_events(owner, f"{owner}-cal", sync_token=None, page_token=None, max_results=250)


def refusal(fake: FakeCalendar, owner: str = "alice") -> ApiError:
    with pytest.raises(ApiError) as raised:
        list_once(fake, owner)
    return raised.value


def test_the_601st_request_of_a_user_in_a_minute_gets_403_user_rate_limit_exceeded() -> None:
    fake = calendar()
    for second in range(600):
        fake.clock.t = second * 0.09  # 600 requests within 54 s
        list_once(fake)
    fake.clock.t = 59.0
    refused = refusal(fake)
    assert (refused.code, refused.body()) == (403, USER_BODY)
    list_once(fake, "bob")  # another user of the project is not limited
    assert fake.calls.refusals_by_reason == {"403 userRateLimitExceeded": 1}


def test_the_window_slides_and_refused_requests_do_not_use_it_up() -> None:
    fake = calendar()
    for _ in range(600):
        list_once(fake)  # all at t = 0
    fake.clock.t = 30.0
    for _ in range(50):
        refusal(fake)  # refused: must not count
    fake.clock.t = 59.999
    refusal(fake)
    fake.clock.t = 60.0  # the requests of t = 0 leave the window
    for _ in range(600):
        list_once(fake)  # had the refusals counted, these would wait until t = 90
    refused = refusal(fake)
    assert refused.reason == "userRateLimitExceeded"
    assert fake.calls.requests.total == 1252 and fake.calls.refused.total == 52


@pytest.mark.parametrize("status", [403, 429])
def test_the_project_limit_answers_rate_limit_exceeded(status: int) -> None:
    fake = calendar(project=10_000, user=600, status=status)
    owners = [f"user{i}" for i in range(20)]
    for owner in owners:
        fake.add_calendar(f"{owner}-cal", owner)
        for _ in range(500):
            list_once(fake, owner)  # 10,000 requests from 20 users, none over 600
    fake.add_calendar("carol-cal", "carol")
    refused = refusal(fake, "carol")
    assert (refused.code, refused.body()) == (status, project_body(status))


def test_the_per_user_limit_is_checked_first() -> None:
    fake = calendar(project=600, user=600)
    for _ in range(600):
        list_once(fake)
    assert refusal(fake).reason == "userRateLimitExceeded"  # both limits are reached
    assert refusal(fake, "bob").reason == "rateLimitExceeded"


def test_watch_and_stop_are_requests_too() -> None:
    fake = calendar(user=3)
    fake.watch("alice", "alice-cal", "chan-1", "token", "https://hook.example/", 3600)
    list_once(fake)
    fake.stop("alice", "chan-1", "res-alice-cal")
    with pytest.raises(ApiError) as raised:
        fake.watch("alice", "alice-cal", "chan-2", "token", "https://hook.example/", 3600)
    assert raised.value.reason == "userRateLimitExceeded"
    assert fake.calls.by_method == {"events.watch": 2, "events.list": 1, "channels.stop": 1}


def test_the_services_see_what_the_calendar_adapter_raises() -> None:
    fake = calendar(user=1)
    subscription = Subscription(id="s1", calendar_id="alice-cal", owner="alice")
    port = SimCalendarPort(fake, num_retries=1)
    port.list_page(subscription, sync_token=None, page_token=None, page_size=2500)
    with pytest.raises(RateLimited) as raised:
        port.list_page(subscription, sync_token=None, page_token=None, page_size=2500)
    assert not isinstance(raised.value, QuotaExhausted)  # back within the minute
    assert raised.value.retry_after == 30.0  # the adapter's delay when none is suggested
    assert "403 userRateLimitExceeded" in str(raised.value)
    # `execute(num_retries=1)` retries a rate-limited list once: two refused requests.
    assert fake.calls.refused.total == 2
    with pytest.raises(RateLimited):
        SimChannelPort(fake).watch(subscription, "chan-1", "t", "https://hook.example/", 60)
    assert fake.calls.refused.total == 3  # watch is not retried


def test_a_channel_lives_at_most_seven_days() -> None:
    fake = calendar(project=None, user=None)
    subscription = Subscription(id="s1", calendar_id="alice-cal", owner="alice")
    opened = SimChannelPort(fake).watch(subscription, "chan-1", "t", "https://hook.example/",
                                        30 * 86400)
    assert (opened.expiration - fake.clock.now()).total_seconds() == 7 * 86400
