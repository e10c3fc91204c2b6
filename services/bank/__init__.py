"""The bank service."""
