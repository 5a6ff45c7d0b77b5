"""The `isograd-relay` command line: one subcommand per process or operator task."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from worker import __version__
from worker.jobs.process import run_worker
from worker.processes import (
    CONFIG_ERROR_EXIT,
    check_config,
    load_settings,
    run_migrate,
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


def _cmd_scheduler(args: argparse.Namespace) -> int:
    from worker.scheduler.process import run_scheduler

    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    run_scheduler(settings, lock_ttl=args.lock_ttl)
    return 0


def _cmd_watch(args: argparse.Namespace) -> int:
    import json
    from datetime import UTC, datetime

    from worker.invitations import InvalidInvitationError
    from worker.storage.store import SqlStore
    from worker.watch import validate_watch_request, watch_assessment

    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    try:
        context = json.loads(args.context) if args.context else None
        request = validate_watch_request(
            {
                "pla_tst_id": args.pla_tst_id,
                "tst_frm_id": args.tst_frm_id,
                "email": args.email,
                "first_name": args.first_name,
                "last_name": args.last_name,
                "sub_com_id": args.sub_com_id,
                "context": context,
            }
        )
    except json.JSONDecodeError:
        print("isograd-relay watch: --context must be a JSON object", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    except InvalidInvitationError as exc:
        for name, problem in exc.errors.items():
            print(f"isograd-relay watch: {name} {problem}", file=sys.stderr)
        return CONFIG_ERROR_EXIT
    store = SqlStore.from_url(settings.database_url)
    try:
        invitation, created = watch_assessment(request, store=store, now=datetime.now(UTC))
    finally:
        store.close()
    state = "watching" if created else "already known"
    print(f"{state}: pla_tst_id {invitation.pla_tst_id} as invitation {invitation.id}")
    return 0


def _cmd_web(args: argparse.Namespace) -> int:
    # Validate first, so a bad configuration is reported once, before uvicorn starts.
    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    if args.config:
        os.environ["RELAY_CONFIG"] = args.config
    import signal

    import uvicorn

    # uvicorn re-raises the SIGINT/SIGTERM it stopped on once it has shut down gracefully; with
    # the default handlers underneath, that ends the process as killed (-15, or a traceback).
    # No-op handlers underneath make a graceful stop exit 0, as process managers expect.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, lambda signum, frame: None)
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
    from worker.dev.demo import DemoError, DemoOptions, run_demo
    from worker.dev.keys import read_admin_token

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


def _cmd_invite(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from worker.bulk import run_invite_command
    from worker.logs import configure_logging

    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    # Per-row info lines would bury the progress bar; --verbose brings them back.
    level = settings.log_level if args.verbose else "WARNING"
    configure_logging(json=settings.log_json, level=level, secrets=settings.redacted_secrets())
    from worker.invitations import INVITATION_FIELDS

    # Every invitation field has a flag of the same name; context is JSON, read below.
    fields: dict[str, object] = {
        name: value
        for name in sorted(INVITATION_FIELDS - {"context"})
        if (value := getattr(args, name)) is not None
    }
    if args.context is not None:
        try:
            fields["context"] = json.loads(args.context)
        except json.JSONDecodeError:
            print("isograd-relay invite: --context must be a JSON object", file=sys.stderr)
            return 2
    if args.csv is None and not fields:
        print("isograd-relay invite: give --email, --first-name, … or --csv FILE", file=sys.stderr)
        return 2
    if args.csv is not None and fields:
        print("isograd-relay invite: --csv excludes the single-candidate flags", file=sys.stderr)
        return 2
    return run_invite_command(
        settings,
        fields=fields,
        idempotency_key=args.idempotency_key,
        csv_path=Path(args.csv) if args.csv else None,
        result_path=Path(args.result) if args.result else None,
        concurrency=args.concurrency,
        out=sys.stdout,
        err=sys.stderr,
    )


def _cmd_deliveries(args: argparse.Namespace) -> int:
    from worker.cli.deliveries import run_deliveries_command
    from worker.storage.records import DeliveryStatus
    from worker.storage.store import SqlStore

    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    store = SqlStore.from_url(settings.database_url)
    try:
        return run_deliveries_command(
            store,
            status=DeliveryStatus(args.status) if args.status else None,
            subscription=args.subscription,
            limit=args.limit,
            as_json=args.json,
            out=sys.stdout,
        )
    finally:
        store.close()


def _cmd_replay(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from worker.cli.deliveries import run_replay_command
    from worker.replay import broker_enqueuer
    from worker.storage.store import SqlStore

    if bool(args.delivery_ids) == args.all_failed:
        print("isograd-relay replay: give DELIVERY_ID… or --all-failed", file=sys.stderr)
        return 2
    if args.include_cancelled and not args.all_failed:
        print("isograd-relay replay: --include-cancelled goes with --all-failed", file=sys.stderr)
        return 2
    settings = _settings(args)
    if settings is None:
        return CONFIG_ERROR_EXIT
    start_logging(settings)
    store = SqlStore.from_url(settings.database_url)
    try:
        with broker_enqueuer(settings.broker_url) as enqueuer:
            return run_replay_command(
                store,
                enqueuer,
                delivery_ids=args.delivery_ids,
                all_failed=args.all_failed,
                include_cancelled=args.include_cancelled,
                subscription=args.subscription,
                force=args.force,
                now=datetime.now(UTC),
                out=sys.stdout,
            )
    finally:
        store.close()


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

    scheduler = commands.add_parser(
        "scheduler",
        parents=[config],
        help="run the periodic jobs: reconciler, sweeper (one active instance)",
    )
    scheduler.add_argument(
        "--lock-ttl",
        type=float,
        default=30.0,
        help="seconds a dead scheduler keeps the lock before another takes over (default 30)",
    )
    scheduler.set_defaults(handler=_cmd_scheduler)

    watch = commands.add_parser(
        "watch",
        parents=[config],
        help="register a test created outside the relay, so it is reconciled and delivered",
    )
    watch.add_argument("--pla-tst-id", type=int, required=True)
    watch.add_argument("--tst-frm-id", type=int, required=True)
    watch.add_argument("--email", required=True)
    watch.add_argument("--first-name")
    watch.add_argument("--last-name")
    watch.add_argument("--sub-com-id", type=int)
    watch.add_argument("--context", metavar="JSON", help="a JSON object passed through in events")
    watch.set_defaults(handler=_cmd_watch)

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

    invite = commands.add_parser(
        "invite",
        parents=[config],
        help="invite one candidate, or every row of a CSV file (--csv), to an Isograd test",
        description="Invite candidates directly through Isograd and the database (no web "
        "process needed). CSV columns: email, first_name, last_name, tst_frm_id; optional "
        "gender, language, ext_id, group, sub_com_id, return_url, context (JSON), "
        "idempotency_key. Running the same file twice creates nothing twice.",
    )
    invite.add_argument("--email")
    invite.add_argument("--first-name", dest="first_name")
    invite.add_argument("--last-name", dest="last_name")
    invite.add_argument("--tst-frm-id", dest="tst_frm_id", help="Isograd test id")
    invite.add_argument("--gender", help="male | female | not_provided")
    invite.add_argument("--language", help="Isograd code 1-8, ISO code or name")
    invite.add_argument("--ext-id", dest="ext_id", help="your id for the candidate")
    invite.add_argument("--group", help="your group id (Isograd ext_dep_id)")
    invite.add_argument("--sub-com-id", dest="sub_com_id", help="Isograd sub account")
    invite.add_argument("--return-url", dest="return_url", help="where the candidate goes after")
    invite.add_argument("--context", metavar="JSON", help="JSON object passed to the event")
    invite.add_argument(
        "--idempotency-key", dest="idempotency_key", help="repeat-safe key (single candidate)"
    )
    invite.add_argument("--csv", metavar="FILE", help="invite every row of this CSV file")
    invite.add_argument(
        "--result", metavar="FILE", help="result CSV (default: FILE.result.csv next to --csv)"
    )
    invite.add_argument(
        "--concurrency", type=int, default=4, help="invitations at once (default 4)"
    )
    invite.add_argument("--verbose", action="store_true", help="log every invitation")
    invite.set_defaults(handler=_cmd_invite)

    deliveries = commands.add_parser(
        "deliveries", parents=[config], help="list deliveries, newest first"
    )
    deliveries.add_argument(
        "--status",
        choices=["pending", "delivering", "retrying", "delivered", "failed", "cancelled"],
    )
    deliveries.add_argument("--subscription", metavar="NAME")
    deliveries.add_argument("--limit", type=int, default=50, help="at most N (default 50)")
    deliveries.add_argument("--json", action="store_true", help="JSON instead of a table")
    deliveries.set_defaults(handler=_cmd_deliveries)

    replay = commands.add_parser(
        "replay", parents=[config], help="send deliveries again (failed ones, or by id)"
    )
    replay.add_argument("delivery_ids", nargs="*", metavar="DELIVERY_ID")
    replay.add_argument("--all-failed", action="store_true", help="every failed delivery")
    replay.add_argument(
        "--include-cancelled",
        action="store_true",
        help="with --all-failed: cancelled deliveries too (subscription disabled, event purged)",
    )
    replay.add_argument("--subscription", metavar="NAME", help="with --all-failed: only these")
    replay.add_argument(
        "--force", action="store_true", help="also replay deliveries already delivered"
    )
    replay.set_defaults(handler=_cmd_replay)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result
