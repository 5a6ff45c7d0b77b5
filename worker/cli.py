"""The `isograd-relay` command line: one subcommand per process or operator task."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worker import __version__


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="isograd-relay",
        description="Relay Isograd (TOSA) results to webhooks, chat, ATS/HRIS and LMS systems.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(handler=_cmd_version)

    simulator = commands.add_parser(
        "simulator", help="run the Isograd API simulator (no credits spent)"
    )
    simulator.add_argument("--host", default="127.0.0.1")
    simulator.add_argument("--port", type=int, default=8100)
    simulator.add_argument("--client-id", default="simulator-client")
    simulator.add_argument("--client-secret", default="simulator-secret")
    simulator.set_defaults(handler=_cmd_simulator)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
