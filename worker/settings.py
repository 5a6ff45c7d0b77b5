"""Settings: the relay's configuration, read once from the environment and relay.toml.

Environment variables (an empty value counts as unset):

    ISOGRAD_ENV            testing | production | simulator (default simulator)
    ISOGRAD_CLIENT_ID      required unless simulator (default there: the simulator's own)
    ISOGRAD_CLIENT_SECRET  required unless simulator
    ISOGRAD_API_URL        overrides the environment's API URL
    ISOGRAD_AUTH_URL       overrides the environment's token URL
    ISOGRAD_SUB_COM_ID     default sub account id for distributor accounts (optional)
    SIMULATOR_URL          where the simulator runs (default http://127.0.0.1:8100)
    PUBLIC_URL             our public base URL, for callback URLs (default http://127.0.0.1:8000)
    CALLBACK_KEYS          "kid1:secret1,kid2:secret2", oldest first (secrets >= 32 characters);
                           required unless simulator, where a development key is kept in
                           VAR_DIR/callback.key (generated on first use)
    ADMIN_TOKEN            bearer token of the admin API (>= 16 characters; unset = API closed)
    DATABASE_URL           default sqlite:///VAR_DIR/relay.db
    BROKER_URL, REDIS_URL  redis://, rediss://, unix://, amqp:// or amqps://; unset = embedded
    HTTP_TIMEOUT           seconds per Isograd request (default 10)
    LOG_LEVEL              DEBUG | INFO | WARNING | ERROR | CRITICAL (default INFO)
    LOG_FORMAT             json | console | auto (default auto: console on a TTY, else JSON)
    VAR_DIR                local state (default var)
    RECONCILE_RATE         Isograd status calls per second the reconciler may make (default 2)
    RECONCILE_HORIZON_DAYS days a pending invitation is polled before it expires (default 30)
    PII_RETENTION_DAYS     days before candidate PII is blanked by the scheduler (unset = keep)
    METRICS_TOKEN          bearer token the web process's /metrics requires (>= 16 characters;
                           unset = /metrics open: it holds no personal data)
    METRICS_PORT           port where `worker` serves its Prometheus metrics (unset = not served)
    METRICS_HOST           address METRICS_PORT binds (default 127.0.0.1)

  Recovery timings, in seconds (> 0; the defaults suit production, tests shorten them):

    RECONCILE_FIRST_CHECK_SECONDS      first act 10 check of a new invitation (default 3600)
    RECONCILE_CHECK_INTERVAL_SECONDS   between checks of an invitation younger than 6 h
                                       (default 300; then hourly, then daily)
    RECONCILE_COMPLETED_RECHECK_SECONDS  after a check found the test completed, when it is due
                                       again if its completion job was lost (default 600)
    RECONCILE_INTERVAL_SECONDS         between reconciler runs in the scheduler (default 60)
    SWEEP_INTERVAL_SECONDS             between sweeper runs in the scheduler (default 60)
    SWEEP_GRACE_SECONDS                how overdue a delivery or how old an unprocessed callback
                                       must be before the sweeper re-enqueues it (default 300)
    DELIVERY_LEASE_SECONDS             how long a delivery being attempted is left to its worker
                                       before it counts as stranded (default 600). Must exceed
                                       every subscription's timeout_seconds (an error otherwise);
                                       below the deliver actor's time limit (360) a notice warns
                                       that an attempt outliving its lease may be sent twice.
    RELAY_CONFIG           path of relay.toml (default relay.toml; see `Settings.from_env`)
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from worker.catalogue import parse_test_names
from worker.dev.keys import development_callback_key
from worker.errors import ConfigurationError
from worker.isograd.environments import IsogradEnvironment, isograd_urls
from worker.subscriptions import (
    Subscription,
    is_http_url,
    parse_subscriptions,
)
from worker.token_strength import MIN_TOKEN_LENGTH, token_problem
from worker.tokens import CallbackKey, parse_callback_keys

SIMULATOR_CLIENT_ID = "simulator-client"
SIMULATOR_CLIENT_SECRET = "simulator-secret"  # noqa: S105 - the simulator's public default
DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8100"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:8000"
DEFAULT_CONFIG_PATH = "relay.toml"
MIN_ADMIN_TOKEN_LENGTH = MIN_TOKEN_LENGTH
DEFAULT_METRICS_HOST = "127.0.0.1"
# Shorter strings are not redacted from logs: they would blank out ordinary words.
MIN_REDACTED_LENGTH = 6
BROKER_SCHEMES = frozenset({"redis", "rediss", "unix", "amqp", "amqps"})
DEFAULT_RECONCILE_RATE = 2.0
DEFAULT_RECONCILE_HORIZON_DAYS = 30
DEFAULT_RECONCILE_FIRST_CHECK_SECONDS = 3600.0
DEFAULT_RECONCILE_CHECK_INTERVAL_SECONDS = 300.0
DEFAULT_RECONCILE_COMPLETED_RECHECK_SECONDS = 600.0
DEFAULT_RECONCILE_INTERVAL_SECONDS = 60.0
DEFAULT_SWEEP_INTERVAL_SECONDS = 60.0
DEFAULT_SWEEP_GRACE_SECONDS = 300.0
DEFAULT_DELIVERY_LEASE_SECONDS = 600.0
# worker.jobs.actors.DELIVERY_TIME_LIMIT_MS in seconds (tests/test_settings.py keeps them equal): a
# lease shorter than that lets a stuck attempt's delivery be claimed again while it runs.
DELIVER_TIME_LIMIT_SECONDS = 360.0


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"
    AUTO = "auto"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the processes need, validated. Build it with `from_env`; the defaults are the
    simulator's, so tests may construct it directly with only the fields they care about."""

    isograd_env: IsogradEnvironment = IsogradEnvironment.SIMULATOR
    isograd_client_id: str = SIMULATOR_CLIENT_ID
    isograd_client_secret: str = field(default=SIMULATOR_CLIENT_SECRET, repr=False)
    isograd_api_url: str = f"{DEFAULT_SIMULATOR_URL}/api/usage"
    isograd_auth_url: str = f"{DEFAULT_SIMULATOR_URL}/oauth2/token"
    isograd_sub_com_id: int | None = None
    simulator_url: str = DEFAULT_SIMULATOR_URL
    public_url: str = DEFAULT_PUBLIC_URL
    callback_keys: tuple[CallbackKey, ...] = ()
    admin_token: str | None = field(default=None, repr=False)
    database_url: str = field(default="sqlite:///var/relay.db", repr=False)
    broker_url: str | None = field(default=None, repr=False)
    subscriptions: tuple[Subscription, ...] = ()
    # tst_frm_id → name, from relay.toml's [test_names] (messages and pages name the test).
    test_names: Mapping[int, str] = field(default_factory=dict)
    http_timeout: float = 10.0
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO
    var_dir: str = "var"
    config_path: str = DEFAULT_CONFIG_PATH
    config_found: bool = False
    reconcile_rate: float = DEFAULT_RECONCILE_RATE
    reconcile_horizon_days: int = DEFAULT_RECONCILE_HORIZON_DAYS
    pii_retention_days: int | None = None
    reconcile_first_check_seconds: float = DEFAULT_RECONCILE_FIRST_CHECK_SECONDS
    reconcile_check_interval_seconds: float = DEFAULT_RECONCILE_CHECK_INTERVAL_SECONDS
    reconcile_completed_recheck_seconds: float = DEFAULT_RECONCILE_COMPLETED_RECHECK_SECONDS
    reconcile_interval_seconds: float = DEFAULT_RECONCILE_INTERVAL_SECONDS
    sweep_interval_seconds: float = DEFAULT_SWEEP_INTERVAL_SECONDS
    sweep_grace_seconds: float = DEFAULT_SWEEP_GRACE_SECONDS
    delivery_lease_seconds: float = DEFAULT_DELIVERY_LEASE_SECONDS
    metrics_token: str | None = field(default=None, repr=False)
    metrics_port: int | None = None
    metrics_host: str = DEFAULT_METRICS_HOST
    # Facts worth a warning at start (no relay.toml, a development callback key, ...).
    notices: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, config_path: str | None = None) -> Settings:
        """Read and validate everything; ConfigurationError lists every problem at once.

        relay.toml is `config_path`, else RELAY_CONFIG, else ./relay.toml. A missing default file
        means no subscriptions (`config_found` False and a notice); a file named explicitly (by
        argument or RELAY_CONFIG) that does not exist is a problem, since it is surely a typo.

        Side effect, simulator only: without CALLBACK_KEYS, a random development key is read from
        (or created in) VAR_DIR/callback.key, so every local process signs and verifies alike.
        """
        env = _Environment(environ)
        problems = env.problems
        notices: list[str] = []

        isograd_env = env.choice("ISOGRAD_ENV", IsogradEnvironment, IsogradEnvironment.SIMULATOR)
        simulator = isograd_env is IsogradEnvironment.SIMULATOR
        simulator_url = env.url("SIMULATOR_URL", DEFAULT_SIMULATOR_URL)
        api_url, auth_url = isograd_urls(isograd_env, simulator_url)
        if simulator:
            client_id = env.text("ISOGRAD_CLIENT_ID") or SIMULATOR_CLIENT_ID
            client_secret = env.text("ISOGRAD_CLIENT_SECRET") or SIMULATOR_CLIENT_SECRET
        else:
            client_id = env.required("ISOGRAD_CLIENT_ID", f"when ISOGRAD_ENV={isograd_env}")
            client_secret = env.required("ISOGRAD_CLIENT_SECRET", f"when ISOGRAD_ENV={isograd_env}")
        var_dir = env.text("VAR_DIR") or "var"

        callback_keys: tuple[CallbackKey, ...] = ()
        keys_value = env.text("CALLBACK_KEYS")
        if keys_value is not None:
            try:
                callback_keys = parse_callback_keys(keys_value)
            except ConfigurationError as exc:
                problems.extend(exc.problems)
        elif simulator:
            try:
                callback_keys = (development_callback_key(Path(var_dir)),)
                notices.append(f"CALLBACK_KEYS unset: using the development key in {var_dir}")
            except OSError as exc:
                problems.append(f"CALLBACK_KEYS: unset, and the development key failed: {exc}")
        else:
            problems.append(f"CALLBACK_KEYS: is required when ISOGRAD_ENV={isograd_env}")

        admin_token = env.text("ADMIN_TOKEN")
        metrics_token = env.text("METRICS_TOKEN")
        for name, token in (("ADMIN_TOKEN", admin_token), ("METRICS_TOKEN", metrics_token)):
            problem = None if token is None else token_problem(name, token)
            if problem is not None:
                problems.append(problem)
        metrics_port = env.positive_int("METRICS_PORT")
        if metrics_port is not None and metrics_port > 65535:
            problems.append("METRICS_PORT: must be a port number (1-65535)")

        database_url = _database_url(env.text("DATABASE_URL"), var_dir, problems)
        broker_url = _broker_url(env, problems)

        named_path = config_path if config_path is not None else env.text("RELAY_CONFIG")
        path, explicit = named_path or DEFAULT_CONFIG_PATH, named_path is not None
        subscriptions, test_names, config_found = _load_config(path, explicit, environ, problems)
        if not config_found and not explicit:
            notices.append(f"{path} not found: no subscriptions, events are stored only")

        lease = env.positive_float("DELIVERY_LEASE_SECONDS", DEFAULT_DELIVERY_LEASE_SECONDS)
        _check_lease(lease, subscriptions, problems, notices)

        settings = cls(
            isograd_env=isograd_env,
            isograd_client_id=client_id,
            isograd_client_secret=client_secret,
            isograd_api_url=env.url("ISOGRAD_API_URL", api_url),
            isograd_auth_url=env.url("ISOGRAD_AUTH_URL", auth_url),
            isograd_sub_com_id=env.positive_int("ISOGRAD_SUB_COM_ID"),
            simulator_url=simulator_url,
            public_url=env.url("PUBLIC_URL", DEFAULT_PUBLIC_URL).rstrip("/"),
            callback_keys=callback_keys,
            admin_token=admin_token,
            database_url=database_url,
            broker_url=broker_url,
            subscriptions=subscriptions,
            test_names=test_names,
            http_timeout=env.seconds("HTTP_TIMEOUT", 10.0),
            log_level=env.choice("LOG_LEVEL", _LogLevel, _LogLevel.INFO, upper=True).value,
            log_format=env.choice("LOG_FORMAT", LogFormat, LogFormat.AUTO),
            var_dir=var_dir,
            config_path=path,
            config_found=config_found,
            notices=tuple(notices),
            reconcile_rate=env.positive_float("RECONCILE_RATE", DEFAULT_RECONCILE_RATE),
            reconcile_horizon_days=env.positive_int("RECONCILE_HORIZON_DAYS")
            or DEFAULT_RECONCILE_HORIZON_DAYS,
            pii_retention_days=env.positive_int("PII_RETENTION_DAYS"),
            reconcile_first_check_seconds=env.positive_float(
                "RECONCILE_FIRST_CHECK_SECONDS", DEFAULT_RECONCILE_FIRST_CHECK_SECONDS
            ),
            reconcile_check_interval_seconds=env.positive_float(
                "RECONCILE_CHECK_INTERVAL_SECONDS", DEFAULT_RECONCILE_CHECK_INTERVAL_SECONDS
            ),
            reconcile_completed_recheck_seconds=env.positive_float(
                "RECONCILE_COMPLETED_RECHECK_SECONDS", DEFAULT_RECONCILE_COMPLETED_RECHECK_SECONDS
            ),
            reconcile_interval_seconds=env.positive_float(
                "RECONCILE_INTERVAL_SECONDS", DEFAULT_RECONCILE_INTERVAL_SECONDS
            ),
            sweep_interval_seconds=env.positive_float(
                "SWEEP_INTERVAL_SECONDS", DEFAULT_SWEEP_INTERVAL_SECONDS
            ),
            sweep_grace_seconds=env.positive_float(
                "SWEEP_GRACE_SECONDS", DEFAULT_SWEEP_GRACE_SECONDS
            ),
            delivery_lease_seconds=lease,
            metrics_token=metrics_token,
            metrics_port=metrics_port,
            metrics_host=env.text("METRICS_HOST") or DEFAULT_METRICS_HOST,
        )
        if problems:
            raise ConfigurationError(problems)
        return settings

    @property
    def log_json(self) -> bool | None:
        """For `configure_logging(json=...)`: None lets it choose by whether stderr is a TTY."""
        return None if self.log_format is LogFormat.AUTO else self.log_format is LogFormat.JSON

    def redacted_secrets(self) -> tuple[str, ...]:
        """Every secret value the logs must never show (for worker.logs' redactor)."""
        candidates = [self.isograd_client_secret, self.admin_token, self.metrics_token]
        candidates += [key.secret.decode(errors="replace") for key in self.callback_keys]
        for subscription in self.subscriptions:
            candidates += subscription.target.secret_values()
        for url in (self.database_url, self.broker_url):
            candidates.append(_url_password(url))
        found = [value for value in candidates if value and len(value) >= MIN_REDACTED_LENGTH]
        return tuple(dict.fromkeys(found))


class _LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


_E = TypeVar("_E", bound=StrEnum)


class _Environment:
    """Reads variables from a mapping, collecting problems instead of raising."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def required(self, name: str, why: str) -> str:
        value = self.text(name)
        if value is None:
            self.problems.append(f"{name}: is required {why}")
            return ""
        return value

    def choice(self, name: str, enum: type[_E], default: _E, *, upper: bool = False) -> _E:
        value = self.text(name)
        if value is None:
            return default
        try:
            return enum(value.upper() if upper else value.lower())
        except ValueError:
            self.problems.append(f"{name}: must be one of {', '.join(enum)}, not {value!r}")
            return default

    def url(self, name: str, default: str) -> str:
        value = self.text(name)
        if value is None:
            return default
        if not is_http_url(value):
            self.problems.append(f"{name}: must be an http(s) URL")
            return default
        return value

    def positive_int(self, name: str) -> int | None:
        value = self.text(name)
        if value is None:
            return None
        if not value.isdigit() or int(value) < 1:
            self.problems.append(f"{name}: must be a positive integer")
            return None
        return int(value)

    def positive_float(self, name: str, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not 0 < number < float("inf"):
            self.problems.append(f"{name}: must be a number > 0")
            return default
        return number

    def seconds(self, name: str, default: float) -> float:
        value = self.text(name)
        if value is None:
            return default
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not 0 < seconds <= 300:
            self.problems.append(f"{name}: must be a number of seconds > 0 and <= 300")
            return default
        return seconds


def _database_url(value: str | None, var_dir: str, problems: list[str]) -> str:
    if value is None:
        return f"sqlite:///{var_dir}/relay.db"
    scheme = value.partition("://")[0].lower()
    # SQLAlchemy's default PostgreSQL driver is psycopg2, which we do not ship: the plain
    # postgres:// and postgresql:// URLs platforms hand out are pointed at psycopg 3.
    if scheme in {"postgres", "postgresql"}:
        return "postgresql+psycopg://" + value.partition("://")[2]
    if scheme.startswith(("sqlite", "postgresql+")):
        return value
    problems.append("DATABASE_URL: must be a sqlite:// or postgresql:// URL")
    return value


def _broker_url(env: _Environment, problems: list[str]) -> str | None:
    name = "BROKER_URL" if env.text("BROKER_URL") is not None else "REDIS_URL"
    value = env.text(name)
    if value is not None and urlsplit(value).scheme.lower() not in BROKER_SCHEMES:
        problems.append(f"{name}: must be a {', '.join(sorted(BROKER_SCHEMES))} URL")
    return value


def _check_lease(
    lease: float,
    subscriptions: tuple[Subscription, ...],
    problems: list[str],
    notices: list[str],
) -> None:
    """An attempt lasts up to its subscription's timeout: a lease shorter than that would let a
    second worker claim a delivery still being sent."""
    longest = max((s.timeout_seconds for s in subscriptions), default=0.0)
    if lease <= longest:
        problems.append(
            "DELIVERY_LEASE_SECONDS: must exceed every subscription's timeout_seconds "
            f"({longest:g})"
        )
    elif lease < DELIVER_TIME_LIMIT_SECONDS:
        notices.append(
            f"DELIVERY_LEASE_SECONDS={lease:g} is below the deliver time limit "
            f"({DELIVER_TIME_LIMIT_SECONDS:g} s): an attempt outliving its lease may be sent twice"
        )


def _load_config(
    path: str, explicit: bool, environ: Mapping[str, str], problems: list[str]
) -> tuple[tuple[Subscription, ...], dict[int, str], bool]:
    try:
        with open(path, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        if explicit:
            problems.append(f"{path}: file not found")
        return (), {}, False
    except OSError as exc:
        problems.append(f"{path}: cannot be read: {exc.strerror}")
        return (), {}, True
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: invalid TOML: {exc}")
        return (), {}, True
    subscriptions: tuple[Subscription, ...] = ()
    test_names: dict[int, str] = {}
    try:
        subscriptions = parse_subscriptions(
            document, environ, source=path, base_dir=Path(path).resolve().parent
        )
    except ConfigurationError as exc:
        problems.extend(exc.problems)
    try:
        test_names = parse_test_names(document, source=path)
    except ConfigurationError as exc:
        problems.extend(exc.problems)
    return subscriptions, test_names, True


def _url_password(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None
