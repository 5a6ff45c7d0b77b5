"""Sink options: reading one `[[subscriptions]]` table of relay.toml, every problem collected.

Each sink kind parses its own keys with a `SinkOptions` (worker.sinks.registry); the common keys
(name, filters, retries) are read by worker.subscriptions with the same reader. A problem names
its location (`relay.toml: subscriptions[2].url: must be an http(s) URL`) and never a secret's
value. Secret values may be written inline, as `env:NAME` (read from the environment) or, for key
material, as `file:PATH` (read from a file, relative to relay.toml's folder).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urlsplit

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"
MAX_SECRET_FILE_BYTES = 64 * 1024

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Problems:
    """Where problems are collected: `where` prefixes each one (`relay.toml: subscriptions[0]`)."""

    where: str
    found: list[str] = field(default_factory=list)

    def add(self, key: str | None, message: str) -> None:
        self.found.append(f"{self.where}{'' if key is None else '.' + key}: {message}")


class SinkOptions:
    """Typed reads of one table; each failed read records a problem and returns None.

    `environ` resolves `env:NAME`; `base_dir` anchors relative `file:PATH` references.
    """

    def __init__(
        self,
        table: Mapping[str, Any],
        problems: Problems,
        *,
        environ: Mapping[str, str],
        base_dir: Path | None = None,
    ) -> None:
        self.table = table
        self.problems = problems
        self.environ = environ
        self.base_dir = base_dir or Path()

    def __contains__(self, key: str) -> bool:
        return key in self.table

    def problem(self, key: str | None, message: str) -> None:
        self.problems.add(key, message)

    def text(self, key: str, *, default: str | None = None) -> str | None:
        """A non-empty string, stripped; required when there is no default."""
        value = self.table.get(key)
        if value is None:
            if default is None:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(key, "must be a non-empty string")
            return None
        return value.strip()

    def choice(
        self, key: str, choices: tuple[str, ...], *, default: str | None = None
    ) -> str | None:
        value = self.text(key, default=default)
        if value is not None and value not in choices:
            self.problem(key, f"must be one of {', '.join(repr(c) for c in choices)}")
            return None
        return value

    def url(self, key: str, *, default: str | None = None, secret: bool = False) -> str | None:
        """An absolute http(s) URL; with `secret`, it may be `env:NAME` and is never echoed."""
        value = self.secret(key, default=default) if secret else self.text(key, default=default)
        if value is not None and not is_http_url(value):
            self.problem(key, "must be an http(s) URL")
            return None
        return value

    def secret(self, key: str, *, default: str | None = None, files: bool = False) -> str | None:
        """A secret written inline, as `env:NAME`, or (with `files`) as `file:PATH`."""
        value = self.table.get(key)
        if value is None:
            if default is None:
                self.problem(key, "is required")
            return default
        if not isinstance(value, str) or not value.strip():
            self.problem(key, "must be a non-empty string")
            return None
        return self.resolve(key, value.strip(), files=files)

    def resolve(self, key: str, value: str, *, files: bool = False) -> str | None:
        """`value` with an `env:` (or `file:`) reference replaced by what it names."""
        if value.startswith(ENV_PREFIX):
            variable = value.removeprefix(ENV_PREFIX)
            if not _ENV_NAME.fullmatch(variable):
                self.problem(key, f"{variable!r} is not an environment variable name")
                return None
            resolved = self.environ.get(variable, "").strip()
            if not resolved:
                self.problem(key, f"environment variable {variable} is not set")
                return None
            return resolved
        if files and value.startswith(FILE_PREFIX):
            path = self.base_dir / Path(value.removeprefix(FILE_PREFIX)).expanduser()
            try:
                with path.open("rb") as handle:
                    data = handle.read(MAX_SECRET_FILE_BYTES + 1)
            except OSError as exc:
                self.problem(key, f"cannot read {path} ({exc.strerror or type(exc).__name__})")
                return None
            if len(data) > MAX_SECRET_FILE_BYTES:
                self.problem(key, f"{path} is larger than {MAX_SECRET_FILE_BYTES} bytes")
                return None
            try:
                text = data.decode("utf-8").strip()
            except UnicodeDecodeError:
                self.problem(key, f"{path} is not UTF-8 text")
                return None
            if not text:
                self.problem(key, f"{path} is empty")
                return None
            return text
        return value

    def number(
        self,
        key: str,
        *,
        default: float | None = None,
        minimum: float | None = None,
        maximum: float | None = None,
    ) -> float | None:
        """A finite number (TOML int or float), within the bounds given (inclusive)."""
        value = self.table.get(key, default)
        if value is None:
            if key not in self.table:
                self.problem(key, "is required")
            return None
        if not is_number(value):
            self.problem(key, "must be a number")
            return None
        number = float(value)
        if minimum is not None and number < minimum:
            self.problem(key, f"must be >= {minimum:g}")
            return None
        if maximum is not None and number > maximum:
            self.problem(key, f"must be <= {maximum:g}")
            return None
        return number

    def integer(
        self, key: str, *, default: int | None = None, minimum: int | None = None
    ) -> int | None:
        value = self.table.get(key, default)
        if value is None:
            if key not in self.table:
                self.problem(key, "is required")
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problem(key, "must be an integer")
            return None
        if minimum is not None and value < minimum:
            self.problem(key, f"must be >= {minimum}")
            return None
        return value

    def flag(self, key: str, *, default: bool) -> bool | None:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self.problem(key, "must be true or false")
            return None
        return value

    def subtable(self, key: str) -> Mapping[str, Any] | None:
        """A TOML table (inline or not), or None when absent (a wrong type is a problem)."""
        value = self.table.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, "must be a table")
            return None
        return value

    def unknown_keys(self, known: frozenset[str] | set[str]) -> None:
        """One problem per key not in `known`, with a suggestion when one is close."""
        for key in self.table:
            if key not in known:
                self.problem(None, unknown_key(key, known))


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float; TOML has inf and nan, and bool is an int in Python but not here."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def is_http_url(url: str) -> bool:
    """True for an absolute http:// or https:// URL with a host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def unknown_key(key: str, known: set[str] | frozenset[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"
