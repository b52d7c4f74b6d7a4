"""Encryption at rest for upstream API keys and repository secrets (Fernet), keyed from ``LISA_ENCRYPTION_KEY``
(or the key file a local install generates), never from the session secret.

A wrong key never passes silently: the start-up check compares the key with a check value stored when the first
key was used, and a value that cannot be opened is an error that says so (never an empty key sent upstream).
"""

from __future__ import annotations

import base64
import hmac

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.db import tables
from backend.errors import LisaError

MISMATCH = (
    "the encryption key does not match the one the stored secrets were sealed with: set LISA_ENCRYPTION_KEY (or "
    "restore DATA_DIR/encryption-key) to that key"
)


class SecretUnreadable(LisaError):
    """A stored secret that the configured key cannot open."""


class KeyMismatch(RuntimeError):
    pass


def derive(key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lisa " + purpose).derive(key.encode())


class SecretBox:
    def __init__(self, key: str) -> None:
        self._key = key
        self._fernet = Fernet(base64.urlsafe_b64encode(derive(key, b"secrets v1"))) if key else None

    @property
    def fingerprint(self) -> str:
        """A check value of the key (reveals nothing of it), stored once to catch a changed key at start-up."""
        return derive(self._key, b"key check v1").hex()

    def _box(self) -> Fernet:
        if self._fernet is None:
            raise SecretUnreadable(
                "no encryption key: set LISA_ENCRYPTION_KEY, or LISA_DATA_DIR to the data directory of the server"
            )
        return self._fernet

    def seal(self, value: str) -> str:
        return self._box().encrypt(value.encode()).decode()

    def open(self, sealed: str, what: str = "a stored secret") -> str:
        try:
            return self._box().decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable(f"{what} cannot be decrypted: {MISMATCH}") from None


async def verify_key(engine: AsyncEngine, box: SecretBox) -> None:
    """Record the key's check value on first use; afterwards refuse any other key (raises :class:`KeyMismatch`)."""
    table = tables.key_checks
    async with engine.begin() as conn:
        await conn.execute(
            insert(table).values(name="encryption", fingerprint=box.fingerprint).on_conflict_do_nothing()
        )
        stored = (await conn.execute(sa.select(table.c.fingerprint).where(table.c.name == "encryption"))).scalar_one()
    if not hmac.compare_digest(stored, box.fingerprint):
        raise KeyMismatch(MISMATCH)
