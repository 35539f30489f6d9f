"""Adapters: the only code that talks to Google (Firestore, Calendar, Cloud Tasks, Pub/Sub).

Each implements ports of `functions.ports`; they import the vocabulary, never services.
"""
