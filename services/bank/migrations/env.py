"""Alembic environment of the bank service's own database."""

from alembic import context

from services.bank.store import metadata
from services.platform.migrations import run_env

run_env(context, metadata)
