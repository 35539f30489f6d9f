"""Lifecycle: subscriptions and their statuses, channel keeping, the renewer (its
channel sections in `channel_renewal`, its request sections in `request_sweeps`,
the scan they share in `scan`), key rotation.

Imports the vocabulary, `intake.channel_tokens` and `delivery`; talks to ports only.
"""
