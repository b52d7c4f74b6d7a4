"""The two server secrets: the session-state signing key and the at-rest encryption key.

Configured (``LISA_SECRET_KEY``, ``LISA_ENCRYPTION_KEY``) wherever the settings require it (production, or any
address but loopback: see ``Settings.secrets_required``). A loopback development install that configures neither
gets random ones, generated once and kept in the data directory (mode 0600), so they survive restarts and every
worker process reads the same ones.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from backend.config import Settings

SECRET_KEY_FILE = "secret-key"
ENCRYPTION_KEY_FILE = "encryption-key"


def key_file(settings: Settings, name: str) -> Path:
    return settings.data_dir.resolve() / name


def read_or_create(path: Path) -> str:
    """The key in ``path``, written there first (atomically, 0600) when there is none yet."""
    with contextlib.suppress(FileNotFoundError):
        return _read(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(32) + "\n")
    try:
        os.link(draft, path)  # fails if another process got there first: then its key is the key
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    return _read(path)


def _read(path: Path) -> str:
    value = path.read_text().strip()
    if not value:
        raise RuntimeError(f"{path} is empty: delete it to have a new key generated, or set the key explicitly")
    return value


def with_keys(settings: Settings, *, create: bool = True) -> Settings:
    """``settings`` with both keys filled in: as configured, else from the data directory's key files (generated
    when ``create``; a process that only reads, like in-process ingestion, passes False and gets what is there)."""
    update: dict[str, object] = {}
    for field, name in (("secret_key", SECRET_KEY_FILE), ("encryption_key", ENCRYPTION_KEY_FILE)):
        if getattr(settings, field).get_secret_value():
            continue
        path = key_file(settings, name)
        if create:
            update[field] = read_or_create(path)
        elif path.exists():
            update[field] = _read(path)
    if not update:
        return settings

    return settings.model_copy(update={k: SecretStr(str(v)) for k, v in update.items()})
