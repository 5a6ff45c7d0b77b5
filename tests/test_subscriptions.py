"""relay.toml subscriptions: parsing, defaults, env: secrets, every problem at once, matching."""

from __future__ import annotations

import base64
import tomllib
from pathlib import Path
from typing import Any

import pytest

from worker.errors import ConfigurationError
from worker.retries import SVIX_DELAYS
from worker.sinks.options import Problems, SinkOptions
from worker.sinks.registry import KINDS
from worker.sinks.webhook import WebhookTarget, webhook_secret_problem
from worker.subscriptions import (
    Subscription,
    parse_subscriptions,
)

KNOWN_KINDS = ", ".join(KINDS)
SECRET = "whsec_" + base64.b64encode(b"s" * 32).decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"o" * 24).decode()
MINIMAL = f"""
[[subscriptions]]
name = "crm"
kind = "webhook"
url = "https://crm.example.com/hooks"
secrets = ["{SECRET}"]
"""


def _parse(text: str, environ: dict[str, str] | None = None) -> tuple[Subscription, ...]:
    return parse_subscriptions(tomllib.loads(text), environ or {})


def _problems(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        _parse(text, environ)
    return caught.value.problems


def _with(line: str) -> str:
    return MINIMAL + line + "\n"


def test_a_complete_subscription_is_parsed() -> None:
    text = f"""
[[subscriptions]]
name = "crm-eu_1"
kind = "webhook"
url = "http://127.0.0.1:9000/hook"
secrets = ["{SECRET}", "{OTHER_SECRET}"]
event_types = ["assessment.completed"]
tst_frm_ids = [123, 456]
sub_com_ids = [42]
timeout_seconds = 7.5
retry_schedule = [0, 10]
enabled = false
disable_after_days = 2
"""

    (subscription,) = _parse(text)

    assert subscription == Subscription(
        name="crm-eu_1",
        kind="webhook",
        target=WebhookTarget("http://127.0.0.1:9000/hook", (SECRET, OTHER_SECRET)),
        event_types=frozenset({"assessment.completed"}),
        tst_frm_ids=frozenset({123, 456}),
        sub_com_ids=frozenset({42}),
        timeout_seconds=7.5,
        retry_schedule=(0.0, 10.0),
        enabled=False,
        disable_after_days=2.0,
    )


def test_omitted_keys_take_their_defaults() -> None:
    (subscription,) = _parse(MINIMAL)

    assert subscription == Subscription(
        name="crm", kind="webhook", target=WebhookTarget("https://crm.example.com/hooks", (SECRET,))
    )
    assert subscription.event_types == frozenset({"assessment.completed"})
    assert (subscription.tst_frm_ids, subscription.sub_com_ids) == (None, None)
    assert (subscription.timeout_seconds, subscription.disable_after_days) == (15.0, 5.0)
    assert subscription.retry_schedule == SVIX_DELAYS
    assert subscription.enabled is True


def test_a_document_without_subscriptions_has_none() -> None:
    assert _parse("") == ()


def test_subscriptions_keep_their_file_order() -> None:
    text = MINIMAL + MINIMAL.replace('name = "crm"', 'name = "lms"')

    assert [s.name for s in _parse(text)] == ["crm", "lms"]


def test_an_env_reference_is_resolved_from_the_environment() -> None:
    text = MINIMAL.replace(SECRET, "env:CRM_SECRET")

    (subscription,) = _parse(text, {"CRM_SECRET": OTHER_SECRET})

    assert subscription.target == WebhookTarget("https://crm.example.com/hooks", (OTHER_SECRET,))


def test_an_env_reference_to_an_unset_variable_is_a_problem() -> None:
    text = MINIMAL.replace(SECRET, "env:CRM_SECRET")

    assert _problems(text) == [
        "relay.toml: subscriptions[0].secrets[0]: environment variable CRM_SECRET is not set"
    ]


def test_an_env_reference_to_an_invalid_secret_is_a_problem_that_hides_the_value() -> None:
    text = MINIMAL.replace(SECRET, "env:CRM_SECRET")

    problems = _problems(text, {"CRM_SECRET": "hunter2-not-a-whsec"})

    assert problems == [
        "relay.toml: subscriptions[0].secrets[0] (env:CRM_SECRET): must start with 'whsec_'"
    ]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('kind = "sms"', f"kind: unknown kind 'sms' (known: {KNOWN_KINDS})"),
        ('url = "ftp://example.com/x"', "url: must be an http(s) URL"),
        ('url = "https://"', "url: must be an http(s) URL"),
        ('url = "http://[::1"', "url: must be an http(s) URL"),
        ("secrets = []", "secrets: must be a non-empty list of 'whsec_...' or 'env:NAME'"),
        ("secrets = [1]", "secrets[0]: must be a string"),
        ('secrets = ["env:1BAD"]', "secrets[0]: '1BAD' is not an environment variable name"),
        ('event_types = ["assessment.complete"]', "event_types: unknown event type"),
        ("event_types = []", "event_types: must be a non-empty list of event types"),
        ("tst_frm_ids = []", "tst_frm_ids: must be a non-empty list of ids"),
        ('tst_frm_ids = ["123"]', "tst_frm_ids: must contain integers only"),
        ("sub_com_ids = [true]", "sub_com_ids: must contain integers only"),
        ("timeout_seconds = 0", "timeout_seconds: must be > 0 and <= 300"),
        ("timeout_seconds = 301", "timeout_seconds: must be > 0 and <= 300"),
        ('timeout_seconds = "15"', "timeout_seconds: must be a number"),
        ("timeout_seconds = nan", "timeout_seconds: must be a number"),
        ("retry_schedule = [5, -1]", "retry_schedule: must be a list of delays"),
        ("retry_schedule = [inf]", "retry_schedule: must be a list of delays"),
        ("retry_schedule = 5", "retry_schedule: must be a list of delays"),
        ('enabled = "yes"', "enabled: must be true or false"),
        ("disable_after_days = 0", "disable_after_days: must be > 0"),
        ("urll = 'x'", "unknown key 'urll' (did you mean 'url'?)"),
    ],
)
def test_each_invalid_value_is_reported_with_its_location(line: str, problem: str) -> None:
    key = line.split(" ", 1)[0]
    text = (
        "\n".join(row for row in MINIMAL.splitlines() if not row.startswith(f"{key} "))
        + f"\n{line}\n"
    )

    (found,) = _problems(text)

    assert found.startswith("relay.toml: subscriptions[0]")
    assert problem in found


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ('"CRM"', "name: must be 1-64 of a-z, 0-9, '_' and '-'"),
        ('"crm hooks"', "name: must be 1-64 of a-z, 0-9, '_' and '-'"),
        ('""', "name: must be a non-empty string"),
        ("3", "name: must be a non-empty string"),
    ],
)
def test_an_invalid_name_is_reported(name: str, problem: str) -> None:
    text = MINIMAL.replace('name = "crm"', f"name = {name}")

    assert _problems(text) == [f"relay.toml: subscriptions[0].{problem}"]


@pytest.mark.parametrize("key", ["name", "kind", "url", "secrets"])
def test_a_missing_required_key_is_reported(key: str) -> None:
    text = "\n".join(row for row in MINIMAL.splitlines() if not row.startswith(f"{key} "))

    (problem,) = _problems(text)

    assert problem.startswith(f"relay.toml: subscriptions[0].{key}: is required")


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        (SECRET, None),
        (SECRET.rstrip("="), None),
        ("whsec_" + base64.b64encode(b"x" * 64).decode(), None),
        ("s3cr3t", "must start with 'whsec_'"),
        ("whsec_not base64!", "must be 'whsec_' followed by base64"),
        ("whsec_a", "must be 'whsec_' followed by base64"),
        ("whsec_" + base64.b64encode(b"x" * 23).decode(), "must decode to 24 to 64 bytes, not 23"),
        ("whsec_" + base64.b64encode(b"x" * 65).decode(), "must decode to 24 to 64 bytes, not 65"),
    ],
)
def test_webhook_secrets_must_be_whsec_base64_of_24_to_64_bytes(
    secret: str, problem: str | None
) -> None:
    assert webhook_secret_problem(secret) == problem


def test_a_literal_invalid_secret_is_reported_without_its_value() -> None:
    text = MINIMAL.replace(SECRET, "whsec_tooshort")

    (problem,) = _problems(text)

    assert "tooshort" not in problem


def test_duplicate_names_are_reported() -> None:
    assert _problems(MINIMAL + MINIMAL) == [
        "relay.toml: subscriptions[1].name: duplicate name 'crm'"
    ]


def test_every_problem_of_every_subscription_is_reported_at_once() -> None:
    text = f"""
[[subscriptions]]
name = "a"
kind = "sms"
url = "nope"
secrets = ["{SECRET}"]

[[subscriptions]]
name = "b"
kind = "webhook"
url = "https://example.com"
secrets = ["env:MISSING"]
timout_seconds = 3
"""

    problems = _problems(text)

    assert problems == [
        f"relay.toml: subscriptions[0].kind: unknown kind 'sms' (known: {KNOWN_KINDS})",
        "relay.toml: subscriptions[1]: unknown key 'timout_seconds'"
        " (did you mean 'timeout_seconds'?)",
        "relay.toml: subscriptions[1].secrets[0]: environment variable MISSING is not set",
    ]


def test_an_unknown_top_level_key_is_reported() -> None:
    assert _problems("[[subscription]]\nname = 'x'\n") == [
        "relay.toml: unknown key 'subscription' (did you mean 'subscriptions'?)"
    ]


def test_subscriptions_that_are_not_an_array_of_tables_are_reported() -> None:
    document: dict[str, Any] = {"subscriptions": {"name": "x"}}

    with pytest.raises(ConfigurationError) as caught:
        parse_subscriptions(document, {})

    assert caught.value.problems == [
        "relay.toml: subscriptions: must be an array of tables ([[subscriptions]])"
    ]


def test_a_subscription_that_is_not_a_table_is_reported() -> None:
    with pytest.raises(ConfigurationError) as caught:
        parse_subscriptions({"subscriptions": ["crm"]}, {}, source="/etc/relay.toml")

    assert caught.value.problems == ["/etc/relay.toml: subscriptions[0]: must be a table"]


def test_secrets_stay_out_of_the_repr() -> None:
    (subscription,) = _parse(MINIMAL)

    assert SECRET not in repr(subscription)


def test_the_url_stays_out_of_the_repr_because_chat_webhook_urls_carry_a_secret() -> None:
    (subscription,) = _parse(MINIMAL)

    assert "crm.example.com" not in repr(subscription)
    assert subscription.name in repr(subscription)


FILTERED = Subscription(
    name="f",
    kind="webhook",
    target=WebhookTarget("https://example.com", (SECRET,)),
    tst_frm_ids=frozenset({1, 2}),
    sub_com_ids=frozenset({7}),
)


@pytest.mark.parametrize(
    ("event_type", "tst_frm_id", "sub_com_id", "expected"),
    [
        ("assessment.completed", 1, 7, True),
        ("assessment.completed", 3, 7, False),
        ("assessment.completed", 2, 8, False),
        ("assessment.completed", 2, None, False),
        ("assessment.started", 1, 7, False),
    ],
)
def test_matching_applies_the_event_type_and_both_filters(
    event_type: str, tst_frm_id: int, sub_com_id: int | None, expected: bool
) -> None:
    assert FILTERED.matches(event_type, tst_frm_id, sub_com_id) is expected


def test_a_subscription_without_filters_matches_every_test_and_account() -> None:
    subscription = Subscription(
        name="all", kind="webhook", target=WebhookTarget("https://example.com", (SECRET,))
    )

    assert subscription.matches("assessment.completed", 99, None)


def test_a_disabled_subscription_matches_nothing() -> None:
    subscription = Subscription(
        name="off",
        kind="webhook",
        target=WebhookTarget("https://example.com", (SECRET,)),
        enabled=False,
    )

    assert not subscription.matches("assessment.completed", 1, None)


def test_a_file_reference_reads_key_material_relative_to_the_config_folder(
    tmp_path: Path,
) -> None:
    (tmp_path / "secret.txt").write_text(f"{SECRET}\n")
    table = {"key": "file:secret.txt"}
    options = SinkOptions(
        table, Problems("relay.toml: subscriptions[0]"), environ={}, base_dir=tmp_path
    )

    assert options.secret("key", files=True) == SECRET
    assert options.problems.found == []


def test_a_missing_file_reference_is_a_problem_naming_the_key_not_the_contents(
    tmp_path: Path,
) -> None:
    options = SinkOptions(
        {"key": "file:absent.pem"},
        Problems("relay.toml: subscriptions[0]"),
        environ={},
        base_dir=tmp_path,
    )

    assert options.secret("key", files=True) is None
    (problem,) = options.problems.found
    assert problem.startswith("relay.toml: subscriptions[0].key: cannot read ")
    assert "absent.pem" in problem


def test_file_references_are_only_read_where_a_kind_allows_key_material() -> None:
    options = SinkOptions({"key": "file:/etc/passwd"}, Problems("x"), environ={})

    assert options.secret("key") == "file:/etc/passwd"
