"""Alembic environment of the card service's own database."""

from alembic import context

from services.card.store import metadata
from services.platform.migrations import run_env

run_env(context, metadata)
