"""The README's relay.toml blocks for the record sinks parse as they are (copyable means valid)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from worker.subscriptions import parse_subscriptions

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION = "## HR and LMS records"


def record_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.findall(r"```toml\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_a_block_per_record_kind() -> None:
    kinds = {kind for block in record_blocks() for kind in re.findall(r'kind = "(\w+)"', block)}

    assert kinds == {"bamboohr", "lti11", "lti13"}


@pytest.mark.parametrize("block", record_blocks(), ids=lambda b: b.split('"')[1])
def test_each_readme_block_is_a_valid_subscription(block: str, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "isograd-relay.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    environ = {"BAMBOOHR_API_KEY": "k" * 40, "LTI11_SECRET": "s" * 32}

    [subscription] = parse_subscriptions(tomllib.loads(block), environ, base_dir=tmp_path)

    assert subscription.kind in {"bamboohr", "lti11", "lti13"}
