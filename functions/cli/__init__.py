"""The operator CLI (`python -m functions.cli`): commands, output, exit statuses.

Reaches services through `functions.app`; only `wiring` imports a Google library.
"""
