"""Development keys: made once under VAR_DIR and shared by every local process.

The admin token (`dev` writes it, `demo` reads it) and the callback key that signs the callback
URLs the simulator calls.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from worker.tokens import CallbackKey

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name
DEV_KEY_FILE = "callback.key"
DEV_KID = "dev"


def admin_token_path(var_dir: str | Path) -> Path:
    return Path(var_dir) / ADMIN_TOKEN_FILE


def read_admin_token(var_dir: str | Path) -> str | None:
    """The kept token, or None if `dev` never made one here."""
    try:
        token = admin_token_path(var_dir).read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def ensure_admin_token(var_dir: str | Path) -> str:
    """The kept token, created (owner-only file) on first use. Safe to run twice."""
    return _kept_secret(admin_token_path(var_dir))


def development_callback_key(var_dir: Path) -> CallbackKey:
    """The simulator's callback key: random, created once, shared by every local process."""
    return CallbackKey(DEV_KID, _kept_secret(var_dir / DEV_KEY_FILE).encode())


def _kept_secret(path: Path) -> str:
    """The random secret kept in `path`, created (owner-only) by the first process to ask."""
    if path.exists() and not path.read_text().strip():
        path.unlink()  # an empty file (a crash while writing the old way) holds no secret
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        try:
            # link() fails if another process created it first; then we use theirs.
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()
