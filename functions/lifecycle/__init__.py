"""Lifecycle: subscriptions and their statuses, channel keeping, the renewer, key rotation.

Imports the vocabulary, `intake.channel_tokens` and `delivery`; talks to ports only.
"""
