"""The sync engine (incremental and full sync, page plans, field diffs) and the worker service.

Imports the vocabulary and `delivery` (publishing after commits); talks to ports only.
"""
