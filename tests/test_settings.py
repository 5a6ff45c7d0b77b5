"""Settings: environment variables, relay.toml loading, the simulator's dev key, redaction list."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest

from worker.errors import ConfigurationError
from worker.isograd.environments import IsogradEnvironment
from worker.settings import LogFormat, Settings
from worker.sinks.webhook import WebhookTarget
from worker.tokens import CallbackKey

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY_A = "a" * 32
KEY_B = "b" * 40
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"w" * 32).decode()
PRODUCTION = {
    "ISOGRAD_ENV": "production",
    "ISOGRAD_CLIENT_ID": "client-123",
    "ISOGRAD_CLIENT_SECRET": "isograd-client-secret",
    "CALLBACK_KEYS": f"k1:{KEY_A}",
}


@pytest.fixture
def no_config(tmp_path: Path) -> str:
    """An explicit relay.toml with no subscriptions, so tests never read the repo's sample."""
    path = tmp_path / "empty.toml"
    path.write_text("")
    return str(path)


def _problems(environ: dict[str, str], config_path: str | None) -> list[str]:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(environ, config_path=config_path)
    return caught.value.problems


def test_production_reads_every_variable(no_config: str) -> None:
    environ = PRODUCTION | {
        "ISOGRAD_SUB_COM_ID": "42",
        "PUBLIC_URL": "https://relay.example.com/",
        "ADMIN_TOKEN": "t0k3n-for-tests!",
        "DATABASE_URL": "postgresql+psycopg://relay:pw@db/relay",
        "REDIS_URL": "redis://cache:6379/0",
        "HTTP_TIMEOUT": "2.5",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "JSON",
        "VAR_DIR": "/srv/relay",
    }

    settings = Settings.from_env(environ, config_path=no_config)

    assert settings.isograd_env is IsogradEnvironment.PRODUCTION
    assert (settings.isograd_client_id, settings.isograd_client_secret) == (
        "client-123",
        "isograd-client-secret",
    )
    assert settings.isograd_api_url == "https://app.isograd.com/api/usage"
    assert settings.isograd_sub_com_id == 42
    assert settings.public_url == "https://relay.example.com"
    assert settings.callback_keys == (CallbackKey("k1", KEY_A.encode()),)
    assert settings.admin_token == "t0k3n-for-tests!"
    assert settings.database_url == "postgresql+psycopg://relay:pw@db/relay"
    assert settings.broker_url == "redis://cache:6379/0"
    assert (settings.http_timeout, settings.log_level) == (2.5, "DEBUG")
    assert (settings.log_format, settings.var_dir) == (LogFormat.JSON, "/srv/relay")
    assert settings.notices == ()


def test_the_testing_environment_uses_isograds_recette_api(no_config: str) -> None:
    settings = Settings.from_env(PRODUCTION | {"ISOGRAD_ENV": "testing"}, config_path=no_config)

    assert settings.isograd_api_url == "https://recette.isograd.com/api/usage"


def test_explicit_isograd_urls_override_the_environment(no_config: str) -> None:
    environ = PRODUCTION | {
        "ISOGRAD_API_URL": "https://proxy.example.com/api",
        "ISOGRAD_AUTH_URL": "https://proxy.example.com/token",
    }

    settings = Settings.from_env(environ, config_path=no_config)

    assert (settings.isograd_api_url, settings.isograd_auth_url) == (
        "https://proxy.example.com/api",
        "https://proxy.example.com/token",
    )


def test_the_simulator_is_the_default_and_needs_no_variable(tmp_path: Path, no_config: str) -> None:
    settings = Settings.from_env({"VAR_DIR": str(tmp_path)}, config_path=no_config)

    assert settings.isograd_env is IsogradEnvironment.SIMULATOR
    assert settings.isograd_api_url == "http://127.0.0.1:8100/api/usage"
    assert settings.isograd_auth_url == "http://127.0.0.1:8100/oauth2/token"
    assert (settings.isograd_client_id, settings.isograd_client_secret) == (
        "simulator-client",
        "simulator-secret",
    )
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.database_url == f"sqlite:///{tmp_path}/relay.db"
    assert (settings.broker_url, settings.admin_token) == (None, None)
    assert (settings.log_level, settings.log_format) == ("INFO", LogFormat.AUTO)


def test_the_simulator_url_moves_the_isograd_urls(tmp_path: Path, no_config: str) -> None:
    environ = {"VAR_DIR": str(tmp_path), "SIMULATOR_URL": "http://127.0.0.1:9999/"}

    settings = Settings.from_env(environ, config_path=no_config)

    assert settings.isograd_api_url == "http://127.0.0.1:9999/api/usage"


def test_the_simulator_creates_a_private_development_callback_key(
    tmp_path: Path, no_config: str
) -> None:
    settings = Settings.from_env({"VAR_DIR": str(tmp_path / "var")}, config_path=no_config)

    key_file = tmp_path / "var" / "callback.key"
    assert settings.callback_keys == (CallbackKey("dev", key_file.read_text().strip().encode()),)
    assert len(settings.callback_keys[0].secret) >= 32
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert any("development key" in notice for notice in settings.notices)


def test_the_development_key_is_the_same_for_every_process(tmp_path: Path, no_config: str) -> None:
    environ = {"VAR_DIR": str(tmp_path)}

    first = Settings.from_env(environ, config_path=no_config)
    second = Settings.from_env(environ, config_path=no_config)

    assert first.callback_keys == second.callback_keys
    assert sorted(path.name for path in tmp_path.iterdir()) == ["callback.key", "empty.toml"]


def test_a_development_key_that_cannot_be_stored_is_a_problem(
    tmp_path: Path, no_config: str
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    (problem,) = _problems({"VAR_DIR": str(blocker)}, no_config)

    assert problem.startswith("CALLBACK_KEYS: unset, and the development key failed:")


def test_callback_keys_win_over_the_development_key(tmp_path: Path, no_config: str) -> None:
    environ = {"VAR_DIR": str(tmp_path), "CALLBACK_KEYS": f"k1:{KEY_A},k2:{KEY_B}"}

    settings = Settings.from_env(environ, config_path=no_config)

    assert [key.kid for key in settings.callback_keys] == ["k1", "k2"]
    assert not (tmp_path / "callback.key").exists()


def test_production_reports_every_missing_variable_at_once(no_config: str) -> None:
    problems = _problems({"ISOGRAD_ENV": "production"}, no_config)

    assert problems == [
        "ISOGRAD_CLIENT_ID: is required when ISOGRAD_ENV=production",
        "ISOGRAD_CLIENT_SECRET: is required when ISOGRAD_ENV=production",
        "CALLBACK_KEYS: is required when ISOGRAD_ENV=production",
    ]


def test_an_empty_variable_counts_as_unset(no_config: str) -> None:
    problems = _problems(PRODUCTION | {"ISOGRAD_CLIENT_SECRET": " "}, no_config)

    assert problems == ["ISOGRAD_CLIENT_SECRET: is required when ISOGRAD_ENV=production"]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("ISOGRAD_ENV", "staging", "ISOGRAD_ENV: must be one of testing, production, simulator"),
        ("ISOGRAD_API_URL", "app.isograd.com", "ISOGRAD_API_URL: must be an http(s) URL"),
        ("ISOGRAD_AUTH_URL", "ftp://x", "ISOGRAD_AUTH_URL: must be an http(s) URL"),
        ("ISOGRAD_SUB_COM_ID", "abc", "ISOGRAD_SUB_COM_ID: must be a positive integer"),
        ("ISOGRAD_SUB_COM_ID", "0", "ISOGRAD_SUB_COM_ID: must be a positive integer"),
        ("PUBLIC_URL", "relay.example.com", "PUBLIC_URL: must be an http(s) URL"),
        ("PUBLIC_URL", "http://[::1", "PUBLIC_URL: must be an http(s) URL"),
        ("CALLBACK_KEYS", "k1:short", "CALLBACK_KEYS: key 1: the secret must be at least 32"),
        ("ADMIN_TOKEN", "short", "ADMIN_TOKEN: must be at least 16 characters"),
        ("ADMIN_TOKEN", "a" * 16, "ADMIN_TOKEN: too predictable (repeated characters"),
        ("ADMIN_TOKEN", "ab" * 12, "ADMIN_TOKEN: too predictable (repeated characters"),
        ("METRICS_TOKEN", "m" * 32, "METRICS_TOKEN: too predictable (repeated characters"),
        ("DATABASE_URL", "mysql://db/relay", "DATABASE_URL: must be a sqlite:// or postgresql://"),
        ("BROKER_URL", "http://cache", "BROKER_URL: must be a amqp, amqps, redis, rediss, unix"),
        ("REDIS_URL", "cache:6379", "REDIS_URL: must be a amqp, amqps, redis, rediss, unix"),
        ("HTTP_TIMEOUT", "fast", "HTTP_TIMEOUT: must be a number of seconds > 0 and <= 300"),
        ("HTTP_TIMEOUT", "0", "HTTP_TIMEOUT: must be a number of seconds > 0 and <= 300"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRIT"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT: must be one of json, console, auto, not 'xml'"),
    ],
)
def test_each_invalid_variable_is_reported(
    name: str, value: str, problem: str, no_config: str
) -> None:
    (found,) = _problems(PRODUCTION | {name: value}, no_config)

    assert found.startswith(problem)


def test_problems_never_quote_a_secret(no_config: str) -> None:
    problems = _problems(PRODUCTION | {"CALLBACK_KEYS": "k1:tooshort-secret"}, no_config)

    assert "tooshort-secret" not in " ".join(problems)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
def test_a_plain_postgresql_url_is_pointed_at_psycopg_3(scheme: str, no_config: str) -> None:
    environ = PRODUCTION | {"DATABASE_URL": f"{scheme}://relay@db:5432/relay"}

    settings = Settings.from_env(environ, config_path=no_config)

    assert settings.database_url == "postgresql+psycopg://relay@db:5432/relay"


def test_broker_url_wins_over_redis_url(no_config: str) -> None:
    environ = PRODUCTION | {"BROKER_URL": "amqp://guest@mq//", "REDIS_URL": "redis://cache"}

    assert Settings.from_env(environ, config_path=no_config).broker_url == "amqp://guest@mq//"


def test_subscriptions_come_from_the_named_relay_toml(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[subscriptions]]\nname = "crm"\nkind = "webhook"\n'
        'url = "https://crm.example.com"\nsecrets = ["env:CRM_SECRET"]\n'
    )
    environ = PRODUCTION | {"RELAY_CONFIG": str(config), "CRM_SECRET": WEBHOOK_SECRET}

    settings = Settings.from_env(environ)

    assert [s.name for s in settings.subscriptions] == ["crm"]
    assert settings.subscriptions[0].target == WebhookTarget(
        "https://crm.example.com", (WEBHOOK_SECRET,)
    )
    assert (settings.config_path, settings.config_found) == (str(config), True)


def test_test_names_come_from_relay_toml(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[test_names]\n101 = " TOSA Excel "\n205 = "TOSA Word"\n')

    settings = Settings.from_env(PRODUCTION, config_path=str(config))

    assert settings.test_names == {101: "TOSA Excel", 205: "TOSA Word"}


def test_bad_test_names_are_reported_with_the_subscriptions_problems(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[subscriptions]]\nname = "crm"\nkind = "webhook"\nurl = "x"\nsecrets = []\n'
        '[test_names]\nexcel = "TOSA Excel"\n101 = ""\n'
    )

    problems = _problems(PRODUCTION, str(config))

    assert f"{config}: test_names.excel: the key must be a tst_frm_id (a positive integer)" in (
        problems
    )
    assert f"{config}: test_names.101: must be a non-empty string" in problems
    assert any(problem.startswith(f"{config}: subscriptions[0]") for problem in problems)


def test_the_config_path_argument_wins_over_relay_config(tmp_path: Path, no_config: str) -> None:
    environ = PRODUCTION | {"RELAY_CONFIG": str(tmp_path / "absent.toml")}

    settings = Settings.from_env(environ, config_path=no_config)

    assert settings.config_path == no_config


def test_a_missing_default_relay_toml_means_no_subscriptions_and_a_notice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    settings = Settings.from_env(PRODUCTION)

    assert (settings.subscriptions, settings.config_found) == ((), False)
    assert settings.notices == ("relay.toml not found: no subscriptions, events are stored only",)


def test_a_missing_relay_toml_that_was_named_explicitly_is_a_problem(tmp_path: Path) -> None:
    absent = str(tmp_path / "relay.toml")

    assert _problems(PRODUCTION, absent) == [f"{absent}: file not found"]


def test_invalid_toml_is_a_problem(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text("[[subscriptions]\n")

    (problem,) = _problems(PRODUCTION, str(config))

    assert problem.startswith(f"{config}: invalid TOML:")


def test_an_unreadable_relay_toml_is_a_problem(tmp_path: Path) -> None:
    (problem,) = _problems(PRODUCTION, str(tmp_path))

    assert problem.startswith(f"{tmp_path}: cannot be read")


def test_environment_and_relay_toml_problems_are_reported_together(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text('[[subscriptions]]\nname = "crm"\nkind = "webhook"\nurl = "x"\nsecrets=[]\n')

    problems = _problems({"ISOGRAD_ENV": "production", "LOG_LEVEL": "loud"}, str(config))

    assert [problem.split(":")[0] for problem in problems] == [
        "ISOGRAD_CLIENT_ID",
        "ISOGRAD_CLIENT_SECRET",
        "CALLBACK_KEYS",
        str(config),
        str(config),
        "LOG_LEVEL",
    ]


def test_the_sample_relay_toml_is_valid_and_targets_the_dev_inbox(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"VAR_DIR": str(tmp_path)}, config_path=str(REPO_ROOT / "relay.toml")
    )

    (subscription,) = settings.subscriptions
    assert isinstance(subscription.target, WebhookTarget)
    assert subscription.target.url == "http://127.0.0.1:8000/inbox/webhook"


@pytest.mark.parametrize(
    ("log_format", "expected"), [("json", True), ("console", False), ("auto", None)]
)
def test_log_json_follows_the_log_format(log_format: str, expected: bool | None) -> None:
    assert Settings(log_format=LogFormat(log_format)).log_json is expected


def test_redacted_secrets_list_every_secret_value(tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(
        '[[subscriptions]]\nname = "crm"\nkind = "webhook"\n'
        f'url = "https://crm.example.com"\nsecrets = ["{WEBHOOK_SECRET}"]\n'
    )
    environ = PRODUCTION | {
        "CALLBACK_KEYS": f"k1:{KEY_A},k2:{KEY_B}",
        "ADMIN_TOKEN": "admin-token-0123456789",
        "DATABASE_URL": "postgresql+psycopg://relay:db-password@db/relay",
        "BROKER_URL": "redis://:broker-password@cache:6379/0",
    }

    secrets = Settings.from_env(environ, config_path=str(config)).redacted_secrets()

    assert set(secrets) == {
        "isograd-client-secret",
        "admin-token-0123456789",
        KEY_A,
        KEY_B,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        "db-password",
        "broker-password",
    }


def test_redacted_secrets_list_the_chat_urls_and_api_credentials_of_every_kind(
    tmp_path: Path,
) -> None:
    slack = "https://hooks.slack.com/services/T1/B1/slack-path-secret"
    teams = "https://flow.example/workflows/1?api-version=1&sig=teams-signature"
    config = tmp_path / "relay.toml"
    config.write_text(
        f'[[subscriptions]]\nname = "s"\nkind = "slack"\nurl = "{slack}"\n\n'
        f'[[subscriptions]]\nname = "t"\nkind = "teams"\nurl = "{teams}"\n\n'
        '[[subscriptions]]\nname = "h"\nkind = "http"\nurl = "https://api.example.com/x"\n'
        'body = "{}"\nheaders = { "X-Key" = "env:X_KEY" }\n'
        'auth = { type = "oauth2_client_credentials", token_url = "https://api.example.com/t",'
        ' client_id = "client", client_secret = "env:CLIENT_SECRET" }\n'
    )
    environ = PRODUCTION | {"X_KEY": "header-key-value", "CLIENT_SECRET": "oauth-client-secret"}

    secrets = Settings.from_env(environ, config_path=str(config)).redacted_secrets()

    for value in (slack, "/services/T1/B1/slack-path-secret", teams, "teams-signature"):
        assert value in secrets
    assert {"header-key-value", "oauth-client-secret"} <= set(secrets)


def test_redacted_secrets_skip_values_too_short_to_redact_safely() -> None:
    settings = Settings(database_url="postgresql+psycopg://relay:pw@db/relay")

    assert "pw" not in settings.redacted_secrets()


def test_secrets_stay_out_of_the_settings_repr(no_config: str) -> None:
    environ = PRODUCTION | {"ADMIN_TOKEN": "admin-token-0123456789"}

    text = repr(Settings.from_env(environ, config_path=no_config))

    assert "isograd-client-secret" not in text
    assert "admin-token-0123456789" not in text
    assert KEY_A not in text


def test_redacted_secrets_tolerate_a_malformed_url() -> None:
    settings = Settings(broker_url="redis://:password@[::1")

    assert settings.redacted_secrets() == ("simulator-secret",)
