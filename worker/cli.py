"""The `isograd-relay` command line: one subcommand per process or operator task."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from worker import __version__
from worker.processes import (
    CONFIG_ERROR_EXIT,
    check_config,
    load_settings,
    run_migrate,
    run_worker,
    start_logging,
)
from worker.settings import Settings


def _settings(args: argparse.Namespace) -> Settings | None:
    return load_settings(os.environ, config_path=args.config)


def _cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    check_config(settings)
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    run_migrate(settings)
    return 0


def _cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    run_worker(settings, threads=args.threads)
    return 0


def _cmd_web(args: argparse.Namespace) -> int:
    # Validate first, so a bad configuration is reported once, before uvicorn starts.
    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    if args.config:
        os.environ["RELAY_CONFIG"] = args.config
    import uvicorn

    # By import string: the worker package never imports the web package (DESIGN §1).
    # log_config=None keeps our redacting log configuration (worker.logs).
    uvicorn.run(
        "webhooks.asgi:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        log_config=None,
        # The access log would print callback tokens (their path); webhooks.callbacks writes one
        # canonical line per callback instead.
        access_log=False,
        proxy_headers=True,
        server_header=False,
    )
    return 0


def _cmd_version(args: argparse.Namespace) -> int:
    print(f"isograd-relay {__version__}")
    return 0


def _cmd_simulator(args: argparse.Namespace) -> int:
    import uvicorn

    from worker.simulator.app import create_simulator_app
    from worker.simulator.state import SimulatorConfig

    config = SimulatorConfig(
        client_id=args.client_id,
        client_secret=args.client_secret,
        public_url=f"http://{args.host}:{args.port}",
    )
    print(f"Isograd simulator on http://{args.host}:{args.port} (client_id={args.client_id})")
    print(f"  token URL: http://{args.host}:{args.port}/oauth2/token")
    print(f"  API URL:   http://{args.host}:{args.port}/api/usage")
    print(f"  control:   http://{args.host}:{args.port}/_simulator/")
    uvicorn.run(create_simulator_app(config), host=args.host, port=args.port, log_level="warning")
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from worker.dev.server import DevOptions, run_dev

    options = DevOptions(
        host=args.host, port=args.port, threads=args.threads, config_path=args.config
    )
    return run_dev(os.environ, options)


def _cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import DemoError, DemoOptions, run_demo
    from worker.dev.admin_token import read_admin_token

    var_dir = os.environ.get("VAR_DIR", "").strip() or "var"
    token = os.environ.get("ADMIN_TOKEN", "").strip() or read_admin_token(var_dir)
    if not token:
        print(
            f"isograd-relay demo: no admin token: run it where `isograd-relay dev` runs (it keeps"
            f" one in {var_dir}/admin.token) or set ADMIN_TOKEN",
            file=sys.stderr,
        )
        return 1
    options = DemoOptions(
        admin_token=token,
        relay_url=args.url,
        simulator_url=args.simulator_url,
        timeout_seconds=args.timeout,
    )
    try:
        run_demo(options)
    except DemoError as exc:
        print(f"isograd-relay demo: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isograd-relay",
        description="Relay Isograd (TOSA) results to webhooks, chat, ATS/HRIS and LMS systems.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_cmd_version)

    config = argparse.ArgumentParser(add_help=False)
    config.add_argument(
        "--config", metavar="PATH", help="relay.toml to load (default: $RELAY_CONFIG or relay.toml)"
    )

    check = commands.add_parser(
        "check-config", parents=[config], help="validate the configuration and list every problem"
    )
    check.set_defaults(handler=_cmd_check_config)

    migrate = commands.add_parser(
        "migrate", parents=[config], help="apply database migrations (safe to run twice)"
    )
    migrate.set_defaults(handler=_cmd_migrate)

    web = commands.add_parser(
        "web", parents=[config], help="run the HTTP edge (callbacks, admin API)"
    )
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    web.set_defaults(handler=_cmd_web)

    worker = commands.add_parser(
        "worker", parents=[config], help="run the job worker (completions, deliveries)"
    )
    worker.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    worker.set_defaults(handler=_cmd_worker)

    simulator = commands.add_parser(
        "simulator", help="run the Isograd API simulator (no credits spent)"
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8100)
    simulator.add_argument("--client-id", default="simulator-client")
    simulator.add_argument("--client-secret", default="simulator-secret")
    simulator.set_defaults(handler=_cmd_simulator)

    dev = commands.add_parser(
        "dev",
        parents=[config],
        help="run web, worker and simulator in one process on embedded defaults",
    )
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--threads", type=int, default=4, help="worker threads (default 4)")
    dev.set_defaults(handler=_cmd_dev)

    demo = commands.add_parser(
        "demo", help="invite, complete and show the delivered event against a running `dev`"
    )
    demo.add_argument("--url", default="http://127.0.0.1:8000", help="the dev server")
    demo.add_argument("--simulator-url", default="http://127.0.0.1:8100")
    demo.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for delivery")
    demo.set_defaults(handler=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
