"""Google APIs: Calendar client, watch/stop, credentials and sealing, OAuth, Cloud Tasks, Pub/Sub.

Imports Google's client libraries, the vocabulary and `config`; no service.
"""
