"""Test-only servers and helpers (real sockets on loopback, real TLS, real gRPC)."""
