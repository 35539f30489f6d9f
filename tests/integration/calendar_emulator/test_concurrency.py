"""Concurrent clients: writes from several threads while another client syncs incrementally."""

from __future__ import annotations

import threading
from typing import Any

from infra.calendar_emulator.testing import calendar_service

from .conftest import USER, timed


def sync_all(service: Any, token: str) -> tuple[set[str], str]:
    seen: set[str] = set()
    page_token = None
    while True:
        response = (
            service.events()
            .list(calendarId="primary", syncToken=token, pageToken=page_token, maxResults=7)
            .execute()
        )
        seen.update(item["id"] for item in response["items"])
        page_token = response.get("nextPageToken")
        if not page_token:
            return seen, response["nextSyncToken"]


def test_concurrent_writers_and_incremental_reader_lose_nothing(emu: Any) -> None:
    reader = calendar_service(emu.base_url, USER)
    start_token = reader.events().list(calendarId="primary").execute()["nextSyncToken"]
    created: list[str] = []
    lock = threading.Lock()

    def write(worker: int) -> None:
        # httplib2 connections are not thread-safe: one client per thread.
        service = calendar_service(emu.base_url, USER)
        for index in range(25):
            event = (
                service.events()
                .insert(
                    calendarId="primary",
                    body=timed(
                        "2025-01-01T10:00:00", "2025-01-01T11:00:00", summary=f"{worker}-{index}"
                    ),
                )
                .execute()
            )
            with lock:
                created.append(event["id"])

    writers = [threading.Thread(target=write, args=(worker,)) for worker in range(4)]
    for thread in writers:
        thread.start()
    seen: set[str] = set()
    token = start_token
    while any(thread.is_alive() for thread in writers):
        batch, token = sync_all(reader, token)
        seen |= batch
    for thread in writers:
        thread.join()
    batch, _ = sync_all(reader, token)
    seen |= batch
    assert seen == set(created) and len(created) == 100
    everything, _ = sync_all(reader, start_token)
    assert everything == set(created)
    assert emu.control.counters()["calls"]["events.insert"] == 100
