"""Test-only support for the Omni client tests: TLS material and a small COSI State server."""
