"""``hopchain stack up | down | status | env``."""

from __future__ import annotations

import argparse
import shlex


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stack", help="start, stop and inspect the local stack (S3, Label Studio, Airflow)")
    ssub = p.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    ssub.add_parser("up", help="start and health-check every service").set_defaults(handler=_up)
    ssub.add_parser("down", help="stop every process of the stack, by pid").set_defaults(handler=_down)
    ssub.add_parser("status", help="health, URL and credentials file of each service").set_defaults(
        handler=_status
    )
    ssub.add_parser("env", help="print shell exports for using the stack from a terminal").set_defaults(
        handler=_env
    )


def _stack(args: argparse.Namespace):
    from pipelines.config import load_params
    from pipelines.stack import LocalStack

    return LocalStack(load_params(args.params, args.profile))


def _up(args: argparse.Namespace) -> int:
    stack = _stack(args)
    stack.up()
    _print_status(stack)
    return 0


def _down(args: argparse.Namespace) -> int:
    _stack(args).down()
    return 0


def _status(args: argparse.Namespace) -> int:
    stack = _stack(args)
    ok = _print_status(stack)
    return 0 if ok else 3


def _print_status(stack) -> bool:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"HopChain local stack ({stack.home})")
    for col in ("service", "state", "url", "pids", "credentials (mode 0600)", "detail"):
        table.add_column(col)
    all_ok = True
    for st in stack.status():
        state = "[green]healthy[/]" if st.healthy else ("[yellow]unhealthy[/]" if st.running else "[red]stopped[/]")
        all_ok &= st.healthy
        table.add_row(st.name, state, st.url, ",".join(map(str, st.pids)) or "-", st.credentials, st.detail)
    Console().print(table)
    return all_ok


def _env(args: argparse.Namespace) -> int:
    for k, v in _stack(args).env_exports().items():
        print(f"export {k}={shlex.quote(v)}")
    return 0
