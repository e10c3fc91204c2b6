"""Logging set-up: one line per record, identifiers masked, service name on every line."""

from __future__ import annotations

import logging
import sys

from services.platform.masking import RedactingFormatter


def configure(service: str, level: str = "INFO") -> None:
    """Send every log record to stderr through the masking formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(
            f"%(asctime)s %(levelname)s {service}[%(process)d] %(name)s: %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic announces its dialect on every readiness check; only its warnings matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
