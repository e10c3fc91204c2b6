"""Alembic environment of the identity service's own database."""

from alembic import context

from services.identity.store import metadata
from services.platform.migrations import run_env

run_env(context, metadata)
