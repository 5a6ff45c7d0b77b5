"""The development admin token: generated once, kept in VAR_DIR/admin.token for `demo` to read."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name


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
    existing = read_admin_token(var_dir)
    if existing is not None:
        return existing
    path = admin_token_path(var_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return token
