"""Callback tokens: signing, verification, rotation, tampering and CALLBACK_KEYS parsing."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from worker.errors import CallbackRejectedError, ConfigurationError
from worker.tokens import (
    CallbackKey,
    callback_url,
    parse_callback_keys,
    sign_callback_token,
    verify_callback_token,
)

OLD = CallbackKey("k1", b"an old secret of at least 32 characters")
NEW = CallbackKey("k2", b"a new secret of at least 32 characters!")


def _reason(keys: tuple[CallbackKey, ...], token: str) -> str:
    with pytest.raises(CallbackRejectedError) as caught:
        verify_callback_token(keys, token)
    return caught.value.reason


def test_a_signed_token_verifies_to_its_invitation_id() -> None:
    token = sign_callback_token((OLD,), "inv_123")

    assert verify_callback_token((OLD,), token) == "inv_123"


def test_the_token_is_kid_invitation_and_untruncated_base64url_hmac() -> None:
    digest = hmac.new(OLD.secret, b"isograd-callback:v1:inv_123", hashlib.sha256).digest()
    mac = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    assert sign_callback_token((OLD,), "inv_123") == f"k1.inv_123.{mac}"


def test_new_tokens_are_signed_with_the_newest_key() -> None:
    token = sign_callback_token((OLD, NEW), "inv_123")

    assert token.startswith("k2.")


def test_a_token_signed_before_rotation_still_verifies_after_a_key_is_added() -> None:
    token = sign_callback_token((OLD,), "inv_123")

    assert verify_callback_token((OLD, NEW), token) == "inv_123"


def test_a_token_whose_key_was_removed_is_rejected_as_unknown_kid() -> None:
    token = sign_callback_token((OLD,), "inv_123")

    assert _reason((NEW,), token) == "unknown_kid"


def test_a_tampered_invitation_id_is_rejected() -> None:
    kid, _, mac = sign_callback_token((OLD,), "inv_123").split(".")

    assert _reason((OLD,), f"{kid}.inv_124.{mac}") == "bad_mac"


def test_a_tampered_mac_is_rejected() -> None:
    token = sign_callback_token((OLD,), "inv_123")
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")

    assert _reason((OLD,), flipped) == "bad_mac"


def test_a_mac_made_with_another_key_is_rejected_even_under_a_known_kid() -> None:
    _, rest = sign_callback_token((NEW,), "inv_123").split(".", 1)

    assert _reason((OLD, NEW), f"k1.{rest}") == "bad_mac"


def test_a_truncated_mac_is_rejected() -> None:
    token = sign_callback_token((OLD,), "inv_123")

    assert _reason((OLD,), token[:-10]) == "bad_mac"


@pytest.mark.parametrize(
    "token",
    [
        "",
        "k1",
        "k1.inv_123",
        "k1.inv_123.",
        ".inv_123.mac",
        "k1..mac",
        "k1.inv_123.mac.extra",
        "k1.inv_é.mac",
        "k1.inv_123.mäc",
        "k1.inv/123.mac",
        "k1.inv_123.mac\n",
    ],
)
def test_a_malformed_token_is_rejected(token: str) -> None:
    assert _reason((OLD,), token) == "malformed"


def test_an_unknown_kid_is_rejected() -> None:
    _, rest = sign_callback_token((OLD,), "inv_123").split(".", 1)

    assert _reason((OLD,), f"k9.{rest}") == "unknown_kid"


@pytest.mark.parametrize("invitation_id", ["", "inv.1", "inv/1", "inv é"])
def test_signing_refuses_an_invitation_id_that_cannot_travel_in_a_token(
    invitation_id: str,
) -> None:
    with pytest.raises(ValueError, match="invitation id"):
        sign_callback_token((OLD,), invitation_id)


def test_signing_without_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="no callback key"):
        sign_callback_token((), "inv_123")


@pytest.mark.parametrize("kid", ["", "k.1", "k/1"])
def test_a_key_id_that_cannot_travel_in_a_token_is_refused(kid: str) -> None:
    with pytest.raises(ValueError, match="key id"):
        CallbackKey(kid, b"x" * 32)


def test_the_secret_does_not_appear_in_the_key_repr() -> None:
    assert "secret of" not in repr(OLD)


def test_the_callback_url_is_under_the_public_url_without_a_double_slash() -> None:
    url = callback_url("https://relay.example.com/", (OLD,), "inv_123")

    token = sign_callback_token((OLD,), "inv_123")
    assert url == f"https://relay.example.com/callbacks/isograd/{token}"


def test_callback_keys_are_parsed_in_order() -> None:
    keys = parse_callback_keys(f"k1:{'a' * 32}, k2:{'b' * 40}")

    assert keys == (CallbackKey("k1", b"a" * 32), CallbackKey("k2", b"b" * 40))


def test_a_secret_may_contain_a_colon() -> None:
    (key,) = parse_callback_keys(f"k1:{'a' * 16}:{'b' * 16}")

    assert key.secret == b"a" * 16 + b":" + b"b" * 16


def test_a_trailing_comma_is_ignored() -> None:
    assert len(parse_callback_keys(f"k1:{'a' * 32},")) == 1


def test_an_empty_callback_keys_value_is_a_problem() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_callback_keys("  ")

    assert caught.value.problems == ["CALLBACK_KEYS: at least one 'kid:secret' key is required"]


def test_every_callback_key_problem_is_reported_at_once_without_the_secrets() -> None:
    value = f"nocolon,k.1:{'a' * 32},k2:short-secret,k3:{'c' * 32},k3:{'d' * 32}"

    with pytest.raises(ConfigurationError) as caught:
        parse_callback_keys(value)

    assert caught.value.problems == [
        "CALLBACK_KEYS: key 1: expected 'kid:secret'",
        "CALLBACK_KEYS: key 2: the key id must be letters, digits, '-' or '_'",
        "CALLBACK_KEYS: key 3: the secret must be at least 32 characters",
        "CALLBACK_KEYS: key 5: duplicate key id 'k3'",
    ]
    assert "short-secret" not in str(caught.value)


def test_a_key_with_an_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        CallbackKey("k1", b"")
