"""Server-side browser sessions, one-time sign-in codes, the encryption key's check value; stored secrets re-sealed
with the separate encryption key instead of one derived from the session secret.

Re-sealing needs both keys, which are never in the database: ``lisa serve`` hands them over through the Alembic
config (``backend/db/migrate.py``: ``attributes["lisa_keys"]`` = {"encryption_key": str, "legacy_secret_keys":
[str, ...]}, the latter being the secrets the old code may have sealed with: the configured LISA_SECRET_KEY and
the old default). Without them the migration refuses to run when there is anything to re-seal. Everything happens
in the migration's one transaction: a value no key opens stops it with nothing changed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import sqlalchemy as sa
from alembic import context, op
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.dialects.postgresql import JSONB

from backend.db.migrate import MigrationRefused

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SEALED = [("models", "api_key_encrypted"), ("rag_repositories", "secret_encrypted")]


# The key derivations as they are at this revision (frozen here: backend/registry/secrets.py may move on).
def _derive(key: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"lisa " + purpose).derive(key.encode())


def _new_box(key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(_derive(key, b"secrets v1")))


def _legacy_box(session_secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(hashlib.sha256(("lisa-model-keys:" + session_secret).encode()).digest()))


def _keys() -> dict[str, Any] | None:
    keys: dict[str, Any] | None = context.config.attributes.get("lisa_keys")
    return keys


def _sealed_rows(conn: sa.Connection) -> list[tuple[str, str, str, str]]:
    found = []
    for table, column in SEALED:
        query = sa.text(f"SELECT id, {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY id")
        found += [(table, column, row[0], row[1]) for row in conn.execute(query)]
    return found


def _opened(box: Fernet, value: str) -> str | None:
    try:
        return box.decrypt(value.encode()).decode()
    except InvalidToken:
        return None


def _reseal(upgrading: bool) -> None:
    conn = op.get_bind()
    rows = _sealed_rows(conn)
    keys = _keys()
    if not rows:
        return
    if not keys or not keys.get("encryption_key"):
        raise MigrationRefused(
            "migration 0006 re-encrypts stored secrets and needs the encryption key and the old secret key: "
            "run it through `lisa serve` (which hands them over), not the alembic command"
        )
    new = _new_box(keys["encryption_key"])
    legacy = [_legacy_box(s) for s in dict.fromkeys(keys.get("legacy_secret_keys") or []) if s]
    if not legacy:
        raise MigrationRefused("migration 0006 needs the old secret key (LISA_SECRET_KEY) the secrets were sealed with")
    for table, column, row_id, value in rows:
        if upgrading:
            if _opened(new, value) is not None:
                continue  # already sealed with the new key
            plain = next((p for box in legacy if (p := _opened(box, value)) is not None), None)
            target = new
        else:
            plain = _opened(new, value)
            target = legacy[0]
        if plain is None:
            raise MigrationRefused(
                f"{table}.{column} of {row_id!r} cannot be opened with the "
                + ("old secret key: set LISA_SECRET_KEY to the value the server ran with before this upgrade"
                   if upgrading else "encryption key (LISA_ENCRYPTION_KEY)")
            )  # fmt: skip
        statement = sa.text(f"UPDATE {table} SET {column} = :value WHERE id = :id")
        conn.execute(statement, {"value": target.encrypt(plain.encode()).decode(), "id": row_id})


def upgrade() -> None:
    op.create_table(
        "browser_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("username", sa.String(256), nullable=False),
        sa.Column("token_hash", sa.String(64)),
        sa.Column("identity", JSONB),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_browser_sessions_expires_at", "browser_sessions", ["expires_at"])
    op.create_table(
        "sign_in_codes",
        sa.Column("code_hash", sa.String(64), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("used_at", TS),
    )
    op.create_table(
        "key_checks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    _reseal(upgrading=True)
    keys = _keys()
    if keys and keys.get("encryption_key"):
        fingerprint = _derive(keys["encryption_key"], b"key check v1").hex()
        op.get_bind().execute(
            sa.text("INSERT INTO key_checks (name, fingerprint) VALUES ('encryption', :f)"), {"f": fingerprint}
        )


def downgrade() -> None:
    _reseal(upgrading=False)
    for table in ("key_checks", "sign_in_codes", "browser_sessions"):
        op.drop_table(table)
