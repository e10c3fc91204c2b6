"""The card service's tables: the only file here that speaks SQL."""

from __future__ import annotations

from sqlalchemy import MetaData

from services.platform import idempotency

metadata = MetaData()
idempotency_keys = idempotency.define_table(metadata)
