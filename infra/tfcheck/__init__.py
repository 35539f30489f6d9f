"""Offline checks of terraform/: provider schema, checkov, consistency with the code.

`terraform validate` needs the google provider, which cannot be downloaded on
the machines that run the tests, so these checks stand in for it. Importing
this package is standard-library only (the set-up script imports
`schema_cache`); the HCL-reading modules import python-hcl2 themselves.
"""
