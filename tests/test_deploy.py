"""Deployment files: each Procfile process starts healthy on real services and stops cleanly;
docker-compose.yml is valid and production-shaped."""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import create_engine, make_url, text

from tests.harness.processes import free_port
from tests.polling import wait_until

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

pytestmark = pytest.mark.e2e


def procfile() -> dict[str, str]:
    """Process type -> command, as a Procfile runner reads it."""
    processes: dict[str, str] = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, command = line.partition(":")
            processes[name.strip()] = command.strip()
    return processes


def expand(command: str, environ: dict[str, str]) -> list[str]:
    """$NAME, ${NAME} and ${NAME:-default}, as the platform's shell expands them."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        return environ.get(name) or match.group(2) or ""

    return shlex.split(re.sub(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)", value, command))


@pytest.fixture(scope="module")
def database_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema (dropped afterwards), as the app's DATABASE_URL."""
    schema = f"relay_deploy_{secrets.token_hex(6)}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(postgres_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        admin.dispose()


@pytest.fixture(scope="module")
def environ(
    redis_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The environment a platform would give the processes: real Redis and PostgreSQL."""
    return {
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(tmp_path_factory.mktemp("var")),
        "RELAY_CONFIG": str(ROOT / "relay.toml"),
        "ADMIN_TOKEN": secrets.token_urlsafe(24),
        "LOG_FORMAT": "json",
        "PORT": str(free_port()),
    }


@pytest.fixture(scope="module")
def migrated(environ: dict[str, str]) -> dict[str, str]:
    """The release phase has run (`isograd-relay migrate`), as platforms run it before deploys."""
    result = subprocess.run(
        expand(procfile()["release"], environ),
        env=environ,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    return environ


class Process:
    """One Procfile process, its output collected in a file (no pipe to fill up)."""

    def __init__(self, name: str, environ: dict[str, str], log_dir: Path) -> None:
        self.log_path = log_dir / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                expand(procfile()[name], environ),
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(STOP_TIMEOUT)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


@pytest.fixture
def start(migrated: dict[str, str], tmp_path: Path) -> Iterator[Callable[[str], Process]]:
    started: list[Process] = []

    def run(name: str) -> Process:
        process = Process(name, migrated, tmp_path)
        started.append(process)
        return process

    yield run
    for process in started:
        process.kill()


def healthy(url: str) -> bool:
    try:
        return httpx2.get(url, timeout=1.0).status_code == 200
    except httpx2.TransportError:
        return False


def test_the_procfile_declares_release_web_worker_and_scheduler() -> None:
    assert set(procfile()) == {"release", "web", "worker", "scheduler"}


def test_the_release_command_migrates_the_database(migrated: dict[str, str]) -> None:
    engine = create_engine(migrated["DATABASE_URL"])
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()

    assert version


def test_web_answers_healthz_on_port_and_stops_cleanly_on_sigterm(
    start: Callable[[str], Process], migrated: dict[str, str]
) -> None:
    web = start("web")
    base = f"http://127.0.0.1:{migrated['PORT']}"
    wait_until(
        lambda: healthy(f"{base}/healthz") or web.popen.poll() is not None,
        timeout=START_TIMEOUT,
        what="web /healthz",
    )
    ready = healthy(f"{base}/readyz")

    code = web.stop()

    assert ready, web.output
    assert code == 0, web.output


@pytest.mark.parametrize(
    ("name", "ready_event"), [("worker", "worker_ready"), ("scheduler", "scheduler_ready")]
)
def test_a_background_process_logs_ready_and_stops_cleanly_on_sigterm(
    start: Callable[[str], Process], name: str, ready_event: str
) -> None:
    process = start(name)
    wait_until(
        lambda: f'"{ready_event}"' in process.output or process.popen.poll() is not None,
        timeout=START_TIMEOUT,
        what=f"{name} to log {ready_event}",
    )
    running = process.popen.poll() is None

    code = process.stop()

    assert running, process.output
    assert code == 0, process.output


# -- docker-compose.yml ---------------------------------------------------------------------

COMPOSE_ENV = {"CALLBACK_KEYS": "k1:" + "x" * 32, "ADMIN_TOKEN": "compose-admin-token-0123"}


def compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin) or `docker-compose` (v1), whichever is installed."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_compose_file() -> None:
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")

    result = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"],
        env={**os.environ, **COMPOSE_ENV},
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr.decode()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


APP_SERVICES = ("migrate", "web", "worker", "scheduler")


def test_compose_runs_every_relay_process_from_one_image(compose: dict[str, Any]) -> None:
    services = compose["services"]

    images = {services[name]["image"] for name in APP_SERVICES}
    builds = {str(services[name]["build"]) for name in APP_SERVICES}

    assert len(images) == 1
    assert len(builds) == 1


def test_compose_runs_each_process_with_its_command(compose: dict[str, Any]) -> None:
    services = compose["services"]

    commands = {name: services[name]["command"][:2] for name in APP_SERVICES}

    assert commands == {name: ["isograd-relay", name] for name in APP_SERVICES}


def test_compose_starts_the_app_only_after_migrations_succeeded(compose: dict[str, Any]) -> None:
    services = compose["services"]

    for name in ("web", "worker", "scheduler"):
        condition = services[name]["depends_on"]["migrate"]["condition"]
        assert condition == "service_completed_successfully", name


def test_compose_migrates_only_once_postgres_is_healthy(compose: dict[str, Any]) -> None:
    depends = compose["services"]["migrate"]["depends_on"]

    assert depends["postgres"]["condition"] == "service_healthy"


def test_compose_redis_is_durable_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(str(part) for part in redis["command"])

    assert "--appendonly yes" in command
    assert "--maxmemory-policy noeviction" in command
    assert "healthcheck" in redis
    assert redis["volumes"]


def test_compose_postgres_has_a_healthcheck_and_a_volume(compose: dict[str, Any]) -> None:
    postgres = compose["services"]["postgres"]

    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert postgres["volumes"]


def test_compose_app_uses_its_redis_and_postgres(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment["REDIS_URL"].startswith("redis://redis:"), name
        assert "@postgres:" in environment["DATABASE_URL"], name
