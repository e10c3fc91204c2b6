"""``python -m console``: serve the operations console (settings: console/config.py)."""

from __future__ import annotations

import os

import uvicorn

from console import config as settings
from console.app import create_app
from services.platform import logs, tracing


def main() -> None:
    config = settings.load()
    env = os.environ
    logs.configure(
        "console",
        env.get("SSCARD_LOG_LEVEL", "").strip().upper() or "INFO",
        env.get("SSCARD_LOG_FORMAT", "").strip().lower() or "json",
    )
    tracing.configure("console", env)
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning")


if __name__ == "__main__":
    main()
