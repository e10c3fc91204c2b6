"""``python -m console``: serve the operations console (settings: console/config.py)."""

from __future__ import annotations

import uvicorn

from console import config as settings
from console.app import create_app


def main() -> None:
    config = settings.load()
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning")


if __name__ == "__main__":
    main()
