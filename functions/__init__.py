"""calsync: keeps Google Calendar events in Firestore and reports what changed.

Nothing in this package does I/O at import time; `functions.app` wires the
adapters together when an entry point first needs them.
"""
