"""Staff who may sign in to the console, for development and small deployments.

A JSON file of users and their Argon2id password hashes (argon2-cffi's defaults):
``{"users": {"<name>": {"hash": "$argon2id$..."}}}``, readable by the console only. ``make run``
creates it with one development user and a random password it prints once. A production
deployment signs staff in through the organisation's OpenID Connect provider instead (README,
"Operations console").
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

DEV_USER = "ops"
_hasher = PasswordHasher()
# Verified when the name is unknown, so an unknown name costs as much as a wrong password.
_DECOY = _hasher.hash(secrets.token_urlsafe(16))


class UserStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _hashes(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        users = json.loads(self.path.read_text())["users"]
        return {name: entry["hash"] for name, entry in users.items()}

    def verify(self, name: str, password: str) -> bool:
        """True only for a known user with the right password."""
        stored = self._hashes().get(name)
        try:
            return _hasher.verify(stored or _DECOY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    def set_password(self, name: str, password: str) -> None:
        users = {n: {"hash": h} for n, h in self._hashes().items()}
        users[name] = {"hash": _hasher.hash(password)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"users": users}, indent=2) + "\n")
        temporary.chmod(0o600)
        temporary.replace(self.path)


def ensure_dev_user(path: Path) -> str | None:
    """Create the development user with a random password unless the file exists; returns the
    new password (to print once), or None when the file was already there."""
    store = UserStore(path)
    if path.exists():
        return None
    password = secrets.token_urlsafe(12)
    store.set_password(DEV_USER, password)
    return password
