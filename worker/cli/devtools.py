"""`isograd-relay dev | demo | simulator`: development mode, its demo, the Isograd simulator."""

from __future__ import annotations

import argparse
import os
import sys

from worker.cli.processes import Commands


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


def add_commands(commands: Commands, config: argparse.ArgumentParser) -> None:
    """Register this group's subcommands; `config` is the parent parser adding --config."""
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
