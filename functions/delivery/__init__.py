"""Delivery: the transactional outbox that publishes committed feed entries (publisher-independent).

Imports the vocabulary only; the Pub/Sub publisher is an adapter behind `ports.Publisher`.
"""
