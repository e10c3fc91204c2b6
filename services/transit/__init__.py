"""The transit service."""
