"""The card service."""
