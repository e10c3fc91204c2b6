"""Protection of identifiers at rest.

A database dump must not show ID numbers in the clear, yet lookups by number must stay indexed.
Each number is stored twice: a blind index (HMAC-SHA256 under a derived key; deterministic, so a
unique index answers lookups) and a ciphertext (AES-256-GCM with a random nonce) from which the
service alone can read it back. Both keys derive from one 32-byte master key held outside the
database (``SSCARD_<SERVICE>_PII_KEY`` or its ``_FILE``). Ciphertexts start with a key-version
byte so the key can be rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = 1


class PiiCipher:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the PII master key must be 32 bytes")
        self._index_key = hmac.new(master_key, b"sscard blind index v1", hashlib.sha256).digest()
        self._aead = AESGCM(hmac.new(master_key, b"sscard encryption v1", hashlib.sha256).digest())

    def blind_index(self, kind: str, value: str) -> str:
        """Deterministic, keyed digest of ``kind`` + ``value`` for indexed lookups."""
        message = f"{kind}\x1f{value}".encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()

    def encrypt_bytes(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return bytes([VERSION]) + nonce + self._aead.encrypt(nonce, data, None)

    def decrypt_bytes(self, blob: bytes) -> bytes:
        if not blob or blob[0] != VERSION:
            raise ValueError("unknown PII key version")
        return self._aead.decrypt(blob[1:13], blob[13:], None)

    def encrypt(self, value: str) -> bytes:
        return self.encrypt_bytes(value.encode())

    def decrypt(self, blob: bytes) -> str:
        return self.decrypt_bytes(blob).decode()
