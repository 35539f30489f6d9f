"""The Calendar adapter's fixed cost per call (issue 19 item 6), on the Calendar emulator.

googleapiclient builds a new `events()` resource, methods and all, from the discovery
document each time it is asked (1-3 ms of CPU): the adapter keeps one per thread
(httplib2 connections are not thread-safe) and owner, beside its service, so a run's
listing pays nothing for it after the first.
"""

from __future__ import annotations

import threading
from typing import Any

from functions.adapters.google.calendar import GoogleCalendar, OwnerTokenCredentials
from functions.adapters.google.channels import GoogleChannels
from functions.model import Subscription

USER = "client@example.com"


def test_listings_and_a_watch_build_the_events_resource_once_per_thread(
        calendar: Any) -> None:
    adapter = GoogleCalendar(OwnerTokenCredentials(), api_endpoint=calendar.api_endpoint)
    sub = Subscription(id="sub-1", calendar_id="primary", owner=USER, credentials_ref="bearer")
    service = adapter._service(sub)
    built: list[str] = []
    events = service.events

    def counted() -> Any:
        built.append(threading.current_thread().name)
        return events()

    service.events = counted
    first = adapter.list_page(sub, sync_token=None, page_token=None, page_size=10)
    second = adapter.list_page(sub, sync_token=first.next_sync_token, page_token=None,
                               page_size=10)
    assert second.items == () and second.next_sync_token
    GoogleChannels(adapter).watch(sub, "ch-client", "token", "http://127.0.0.1:9/", 3600)
    assert built == [threading.current_thread().name], built
    # Another thread has a service (and resource) of its own.
    other: list[Any] = []
    thread = threading.Thread(target=lambda: other.append(adapter._events(sub)))
    thread.start()
    thread.join()
    assert other and other[0] is not adapter._events(sub)
