"""An in-memory Google Calendar API v3 emulator for tests, the local stack and benchmarks.

Run it with ``python -m infra.calendar_emulator --port N``; drive it from tests
with :mod:`.testing` (``running_emulator``, ``calendar_service``) and
:mod:`.control` (``EmulatorControl``, standard library only).

Modules by concern: ``server`` (HTTP), ``app`` (wiring), ``api_routes`` and
``control_routes`` (routing; ``control_access`` for sharing, calendar lists and
quotas, ``control_fields``), ``store`` (calendars, ACLs, events, change counter),
``acl`` (roles and what each method needs), ``calendar_lists`` +
``calendar_list_listing`` (each user's list, calendarList.list/get),
``event_writes``, ``list_query`` + ``listing`` (events.list/instances),
``recurrence`` (dateutil expansion), ``tokens`` (sync/page tokens),
``channels`` + ``push`` (watch channels and delivery), ``auth`` (bearer
tokens and ``/token``), ``auth_codes`` + ``consent`` (the authorization-code
grant and its consent page ``/o/oauth2/v2/auth``), ``faults`` (injected
failures, rate limit), ``quotas`` (Google's per-project and per-user quotas,
daily counters), ``counters``, ``clock``, ``errors``.
"""
