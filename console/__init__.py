"""The operations console: a browser application for the people who run sscard.

It is a client of the services over gRPC like any integrator (the ``ops-console`` client of the
registry, role ``ops``), never reads their databases, and imports only the shared platform
helpers (credentials, masking, the clock) from ``services.platform``.
"""
