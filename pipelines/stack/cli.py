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

    console = Console(highlight=False, soft_wrap=True)
    console.print(f"[bold]HopChain local stack[/] (state in {stack.home})")
    all_ok = True
    for st in stack.status():
        state = "[green]healthy[/]" if st.healthy else ("[yellow]unhealthy[/]" if st.running else "[red]stopped[/]")
        all_ok &= st.healthy
        console.print(f"  {st.name:<12} {state:<20} {st.url}")
        console.print(f"  {'':<12} pids: {','.join(map(str, st.pids)) or '-'}")
        if st.detail:
            console.print(f"  {'':<12} {st.detail}")
        console.print(f"  {'':<12} credentials: {st.credentials} (mode 0600)")
    return all_ok


def _env(args: argparse.Namespace) -> int:
    for k, v in _stack(args).env_exports().items():
        print(f"export {k}={shlex.quote(v)}")
    return 0

