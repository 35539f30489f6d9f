"""Intake: the webhook service that turns Google's push notifications into sync requests,
and the channel tokens it verifies. Imports the vocabulary only (ports, never adapters)."""
