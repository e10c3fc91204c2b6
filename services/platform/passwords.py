"""Password hashing: Argon2id, the one choice for every secret a person types.

Parameters meet OWASP's minimum for Argon2id (m = 19 MiB, t = 2, p = 1). Hashes carry their
parameters, so raising them later still verifies the hashes stored before.
"""

from __future__ import annotations

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

MEMORY_KIB = 19 * 1024
TIME_COST = 2
PARALLELISM = 1


class Argon2Hasher:
    def __init__(
        self, memory_kib: int = MEMORY_KIB, time_cost: int = TIME_COST, parallelism: int = 1
    ) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        # Checked against when there is no hash, so a missing card costs the same time.
        self._decoy = self._hasher.hash("decoy password")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._decoy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False
