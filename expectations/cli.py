"""``hopchain validate``: run a validation suite on a Parquet file, outside Airflow.

    hopchain validate --suite questions --data questions.parquet \\
        [--manifest manifest.parquet] [--instances instances.parquet] \\
        [--questions questions.parquet] [--annotations annotations.parquet] \\
        [--out DIR] [--run-id ID] [--label NAME] [--upload]

Writes ``DIR/<suite>.validation.json`` (the full result) and ``DIR/datadocs/<suite>/index.html``, ``DIR``
being ``--out`` or, by default, ``<stack home>/validation/<run id>`` (``HOPCHAIN_HOME`` or ``stack.home``:
never the checkout); with ``--upload`` also stores both in the object store (credentials from
``HOPCHAIN_S3_*``).
Exit status: 0 when no critical expectation failed (warnings are printed), 1 when one did — the
failing expectations are named on stderr — and 2 for unusable input (unknown suite, missing file).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    from expectations.checks import REFERENCES
    from expectations.suites import SUITES

    p = subparsers.add_parser("validate", help="validate a table with a Great Expectations suite",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", required=True, choices=sorted(SUITES), help="which suite to run")
    p.add_argument("--data", required=True, type=Path, help="the table to validate (Parquet)")
    for ref in REFERENCES:
        p.add_argument(f"--{ref}", type=Path, default=None, help=f"the {ref} table (Parquet) for cross-table checks")
    p.add_argument("--out", type=Path, default=None,
                   help="where results and Data Docs go (default: <stack home>/validation/<run id>)")
    p.add_argument("--run-id", default="manual", help="run id used in object-store keys and Data Docs")
    p.add_argument("--label", default=None, help="distinguishes several validations of one suite in a run")
    p.add_argument("--upload", action="store_true", help="also upload the result and Data Docs (HOPCHAIN_S3_*)")
    p.set_defaults(handler=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    from expectations.checks import REFERENCES, References
    from expectations.runner import ValidationFailed, read_table, validate
    from pipelines.config import load_params, work_home

    params = load_params(args.params, args.profile)
    out = args.out
    if out is None:  # the run id as one safe folder name: never a path out of the stack home
        out = work_home(params) / "validation" / (re.sub(r"[^A-Za-z0-9._-]+", "_", args.run_id).strip("._") or "run")
    paths: dict[str, str | None] = {"data": args.data, **{r: getattr(args, r) for r in REFERENCES}}
    missing = [f"--{k} {v}" for k, v in paths.items() if v is not None and not Path(v).is_file()]
    if missing:
        print(f"error: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    store = None
    if args.upload:
        from pipelines.store import ObjectStore, S3Credentials

        creds = S3Credentials.from_env()
        if creds is None:
            print("error: --upload needs HOPCHAIN_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY", file=sys.stderr)
            return 2
        store = ObjectStore(creds, params.store.bucket)
    refs = References(**{r: read_table(getattr(args, r)) for r in REFERENCES if getattr(args, r) is not None})
    try:
        report = validate(args.suite, read_table(args.data), params=params, refs=refs, run_id=args.run_id,
                          label=args.label, out_dir=out, store=store)
    except ValidationFailed as failed:
        print(failed.report.summary())
        print(f"error: critical expectations failed: {', '.join(failed.report.critical_failures)}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0
