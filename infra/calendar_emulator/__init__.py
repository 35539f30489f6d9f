"""An in-memory Google Calendar API v3 emulator for tests, the local stack and benchmarks.

Run it with ``python -m infra.calendar_emulator --port N``; drive it from tests
with :mod:`infra.calendar_emulator.testing` and :mod:`infra.calendar_emulator.control`.
"""
