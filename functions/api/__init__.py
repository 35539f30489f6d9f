"""The consumer's `/v1` API: routes, schema, OpenAPI, errors, views, page tokens, feed reader.

Imports the shared vocabulary, `config` and `logs`; only `wiring` imports adapters or app.
"""
