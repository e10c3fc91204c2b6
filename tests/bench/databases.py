"""Fresh, empty databases for a benchmark run: one per service, dropped afterwards.

With a PostgreSQL URL each service gets its own schema in that database (``search_path`` in
the URL); without, its own SQLite file (WAL, as ``make run`` deploys) in a temporary directory.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from services.platform import migrations
from services.platform.db import Database, make_engine


@contextlib.contextmanager
def fresh(services: Sequence[str], pg: str = "") -> Iterator[dict[str, str]]:
    """A database URL per service, each migrated to its head."""
    with contextlib.ExitStack() as stack:
        if pg:
            urls = {name: stack.enter_context(_schema(pg)) for name in services}
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sscard-bench-")))
            urls = {name: f"sqlite:///{root / name}.db" for name in services}
        for name, url in urls.items():
            engine = make_engine(url)
            try:
                migrations.upgrade(name, engine)
            finally:
                engine.dispose()
        yield urls


@contextlib.contextmanager
def opened(url: str) -> Iterator[Database]:
    db = Database(make_engine(url))
    try:
        yield db
    finally:
        db.dispose()


@contextlib.contextmanager
def _schema(pg: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(pg).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
