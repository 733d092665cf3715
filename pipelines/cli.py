"""The ``hopchain`` command: every stage runs from here, with or without Airflow.

Each command group lives in its own module exposing ``register(subparsers)``; modules import
heavy libraries (torch, pandas, GX) only inside their handlers, so ``hopchain --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that contribute sub-commands (each has ``register(subparsers)``).
COMMAND_MODULES = [
    "pipelines.stack.cli",
    "pipelines.ingest.cli",
    "pipelines.detect.cli",
    "pipelines.segment.cli",
    "pipelines.questions.cli",
    "pipelines.annotation.cli",
    "pipelines.release.cli",
    "expectations.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hopchain", description="HopChain multi-hop visual reasoning data platform"
    )
    parser.add_argument("--params", default=None, help="params.yaml to use (default: the repository's)")
    parser.add_argument("--profile", default=None, help="profile from params.yaml (demo, gpu, ...)")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name == name:  # command group not built yet
                continue
            raise
        module.register(sub)
    return parser


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv``, set up logging and run the chosen sub-command's handler; a configuration or
    stack error is one line on stderr and exit code 1. Shared with ``hopchain-demo``."""
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("great_expectations", "httpx", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from pipelines.config import ConfigError
    from pipelines.contracts import ContractError
    from pipelines.stack.process import StackError

    try:
        return int(args.handler(args) or 0)
    except (ConfigError, ContractError, StackError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
