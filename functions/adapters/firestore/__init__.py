"""Firestore: stores, the event codec and the query catalogue (the only Firestore code).

Imports `google.cloud.firestore`, the vocabulary and `config`; no service.
"""
