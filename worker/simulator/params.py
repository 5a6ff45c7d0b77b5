"""The form parameters of one API call, read the way Isograd reads them."""

from __future__ import annotations

import re
from collections.abc import Mapping

from worker.simulator.failures import ActionError, Failure, missing_property

_INTEGER = re.compile(r"[+-]?\d+")


class Params:
    """Form values by name. An empty value counts as absent (PHP's `empty()` reading)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def get(self, name: str) -> str | None:
        value = self._values.get(name)
        if value is None:
            return None
        value = value.strip()
        return value or None

    def require(self, name: str) -> str:
        """The value, or error 105 naming the property."""
        value = self.get(name)
        if value is None:
            raise ActionError(missing_property(name))
        return value

    def integer(self, name: str, invalid: Failure, *, required: bool = False) -> int | None:
        """An integer value; `invalid` is raised when it is not one (e.g. 501 for a pla_tst_id)."""
        value = self.require(name) if required else self.get(name)
        if value is None:
            return None
        if not _INTEGER.fullmatch(value):
            raise ActionError(invalid)
        return int(value)

    def lenient_integer(self, name: str) -> int | None:
        """An optional integer where the reference documents no error: garbage counts as absent."""
        value = self.get(name)
        return int(value) if value is not None and _INTEGER.fullmatch(value) else None

    def flag(self, name: str) -> bool:
        """A `1` switch (html, redirect, add_pro, ...)."""
        return self.get(name) == "1"

    def tst_frm_id(self, invalid: Failure) -> int:
        """`tst_frm_id`, or its old name `rea_tst_id` (valid until 31/12/2025 per the reference)."""
        name = "tst_frm_id" if self.get("tst_frm_id") is not None else "rea_tst_id"
        if self.get(name) is None:
            raise ActionError(missing_property("tst_frm_id"))
        value = self.integer(name, invalid, required=True)
        assert value is not None
        return value

    def options(self, names: tuple[str, ...]) -> dict[str, str]:
        """The optional parameters among `names` that were sent, as sent."""
        return {name: value for name in names if (value := self.get(name)) is not None}
