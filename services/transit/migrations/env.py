"""Alembic environment of the transit service's own database."""

from alembic import context

from services.platform.migrations import run_env
from services.transit.store import metadata

run_env(context, metadata)
