"""Shared runtime of the sscard services; holds no business rules."""
