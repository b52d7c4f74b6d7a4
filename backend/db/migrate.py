"""Apply Alembic migrations programmatically (used by `lisa serve` before any worker starts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class MigrationRefused(RuntimeError):
    """A migration that cannot go ahead as things are (its message says what to change); nothing was changed."""


@dataclass(frozen=True)
class MigrationKeys:
    """Secrets a migration may need and the database never holds (0006 re-seals stored secrets with them)."""

    encryption_key: str
    legacy_secret_keys: list[str] = field(default_factory=list)  # what the old code may have sealed with


def alembic_config(database_url: str, keys: MigrationKeys | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["database_url"] = database_url
    if keys is not None:
        cfg.attributes["lisa_keys"] = {
            "encryption_key": keys.encryption_key,
            "legacy_secret_keys": list(keys.legacy_secret_keys),
        }
    return cfg


def upgrade(database_url: str, revision: str = "head", keys: MigrationKeys | None = None) -> None:
    command.upgrade(alembic_config(database_url, keys), revision)


def downgrade(database_url: str, revision: str, keys: MigrationKeys | None = None) -> None:
    command.downgrade(alembic_config(database_url, keys), revision)
