"""``python -m pipelines.questions.ops --docs`` rewrites the ops table of docs/hop-programs.md from the
registry; ``--check`` exits 1 when the checked-in table is not the generated one; no option lists the ops."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines.questions.ops import OPS
from pipelines.questions.ops.docs import DOCS_PATH, docs_are_current, write_docs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.questions.ops", description=__doc__)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--docs", action="store_true", help="rewrite the ops table in the docs page")
    what.add_argument("--check", action="store_true", help="exit 1 if the docs table is stale")
    parser.add_argument("--path", type=Path, default=DOCS_PATH, help="the docs page (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.docs:
        changed = write_docs(OPS, args.path)
        print(f"{args.path}: {'table rewritten' if changed else 'table already current'}")
        return 0
    if args.check:
        if docs_are_current(OPS, args.path):
            print(f"{args.path}: the ops table is current")
            return 0
        print(f"{args.path}: the ops table is stale; run python -m pipelines.questions.ops --docs", file=sys.stderr)
        return 1
    for spec in OPS:
        ins = ", ".join(spec.inputs) or "—"
        print(f"{spec.name:<13} {ins:<18} -> {spec.output:<9} {', '.join(spec.reasons)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
