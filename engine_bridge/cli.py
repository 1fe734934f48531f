"""`avatar-runtime` command line: one subcommand per job, each registered from its module."""

from __future__ import annotations

import argparse
import logging
import sys

from avatar_runtime.faces.native_logs import show_native_logs

from . import create_cmd, demo, export_cmd, serve

# Each module exposes add_parser(subparsers) -> sets `func` on its parser.
COMMANDS = [demo, create_cmd, export_cmd, serve]
VERBOSE_HELP = "debug logging, and MediaPipe/TFLite's own start-up log lines"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-runtime",
                                     description="One photo to an animatable 3D head.")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(subparsers)
    # Also after the subcommand (`avatar-runtime demo --verbose`); SUPPRESS keeps a flag
    # given before it from being reset by the subparser's default.
    for sub in subparsers.choices.values():
        sub.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                         help=VERBOSE_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_native_logs(args.verbose)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
