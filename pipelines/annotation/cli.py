"""``hopchain annotators add|register|unregister|list``, ``hopchain project check|repair`` (the project as the
platform set it: :mod:`pipelines.annotation.guard`) and ``hopchain consensus --annotations --questions --out``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.annotation.client import LabelStudioClient
    from pipelines.annotation.guard import ProjectState


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("annotators", help="manage Label Studio annotator accounts")
    asub = p.add_subparsers(dest="annotators_command", metavar="ACTION", required=True)
    add = asub.add_parser("add", help="create an annotator account (no prompts) and print how to log in")
    add.add_argument("email")
    add.add_argument(
        "--password-env",
        metavar="VAR",
        help="take the password from this environment variable (default: generate one)",
    )
    add.set_defaults(handler=_annotators_add)
    reg = asub.add_parser("register", help="count an existing Label Studio account's answers (registered annotator)")
    reg.add_argument("email", help="the account's email in Label Studio")
    reg.add_argument("--simulated", action="store_true", help="a simulated stand-in (demo/tests): released as such")
    reg.set_defaults(handler=_annotators_register)
    unreg = asub.add_parser("unregister", help="stop counting an account's answers (kept in the registry, inactive)")
    unreg.add_argument("email")
    unreg.set_defaults(handler=_annotators_unregister)
    ls = asub.add_parser("list", help="the registered annotators")
    ls.set_defaults(handler=_annotators_list)

    proj = sub.add_parser("project",
                          help="the Label Studio project as the platform set it (config, settings, webhooks)")
    psub = proj.add_subparsers(dest="project_command", metavar="ACTION", required=True)
    chk = psub.add_parser("check", help="one line per difference from what the platform set; exit 1 if any")
    chk.set_defaults(handler=_project_check)
    rep = psub.add_parser("repair", help="put the project back as the platform set it (its held batches then go on)")
    rep.set_defaults(handler=_project_repair)
    for action in (chk, rep):
        action.add_argument("--project", type=int, metavar="ID",
                            help="the project's id (default: the project titled annotation.project_title)")

    c = sub.add_parser("consensus", help="decide four-way consensus from an annotations table (no Airflow)")
    c.add_argument(
        "--annotations",
        required=True,
        type=Path,
        help="Parquet with the annotations contract columns (+ optional verdict, lead_time_s)",
    )
    c.add_argument("--questions", required=True, type=Path, help="Parquet with the questions contract")
    c.add_argument("--out", required=True, type=Path, help="consensus Parquet to write (atomically)")
    c.add_argument("--rejects", type=Path, help="rejects Parquet (default: <out stem>.rejects.parquet)")
    c.add_argument(
        "--stats", type=Path, help="annotator stats Parquet (default: <out stem>.annotators.parquet)"
    )
    c.add_argument("--required", type=int, default=None, help="annotators per question (default: params)")
    c.set_defaults(handler=_consensus)


def label_studio_credentials(args: argparse.Namespace):
    """``HOPCHAIN_LS_URL`` + ``HOPCHAIN_LS_TOKEN``, else the local stack's credentials file."""
    from pipelines.annotation.client import LabelStudioCredentials
    from pipelines.config import load_params
    from pipelines.stack import LocalStack
    from pipelines.stack.services import read_secret_file

    if os.environ.get("HOPCHAIN_LS_URL") and os.environ.get("HOPCHAIN_LS_TOKEN"):
        return LabelStudioCredentials(
            os.environ["HOPCHAIN_LS_URL"].rstrip("/"), os.environ["HOPCHAIN_LS_TOKEN"]
        )
    stack = LocalStack(load_params(args.params, args.profile))
    f = stack.labelstudio.credentials_file()
    if not f.exists():
        from pipelines.cli import CommandError

        raise CommandError("Label Studio", "no credentials",
                           "set HOPCHAIN_LS_URL and HOPCHAIN_LS_TOKEN, or start the local stack: hopchain stack up")
    data = read_secret_file(f)
    data["url"] = stack.labelstudio.url()
    return LabelStudioCredentials.from_mapping(data)


def _annotators_add(args: argparse.Namespace) -> int:
    from pipelines.annotation.annotators import AnnotatorExists, add_annotator
    from pipelines.annotation.client import LabelStudioClient

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            print(f"error: environment variable {args.password_env} is empty", file=sys.stderr)
            return 2
    # the registry first: an account the platform creates must count, so nothing is created where it could
    # not be registered (no object store credentials)
    store, key = _registry_context(args)
    with LabelStudioClient.from_credentials(label_studio_credentials(args)) as admin:
        try:
            account = add_annotator(admin, args.email, password)
        except AnnotatorExists as err:
            print(
                f"error: {err}; they log in at {admin.url}/user/login/ with their password (an admin "
                f"resets it on the Label Studio host: label-studio reset_password --username "
                f"{args.email} --password NEW --data-dir <stack home>/labelstudio)",
                file=sys.stderr,
            )
            return 3
        # other Label Studio failures (refused token, server down) are one line from run_cli
        register_account(store, key, admin, args.email)  # the accounts the platform creates count
    from pipelines.config import load_params

    print(account.instructions(load_params(args.params, args.profile).annotation.project_title))
    return 0


def _registry_context(args: argparse.Namespace):  # -> (store, key)
    """The platform bucket (HOPCHAIN_S3_* or the local stack) and the registry key."""
    from pipelines.cli import CommandError, _doctor_services
    from pipelines.config import load_params
    from pipelines.store import ObjectStore
    from pipelines.store.ledger import Ledger

    params = load_params(args.params, args.profile)
    services = _doctor_services(params)
    if services.s3 is None:
        raise CommandError("object store", "no credentials",
                           "set HOPCHAIN_S3_ENDPOINT, HOPCHAIN_S3_ACCESS_KEY and HOPCHAIN_S3_SECRET_KEY, or start "
                           "the local stack: hopchain stack up")
    store = ObjectStore(services.s3, params.store.bucket)
    return store, Ledger(store, params.store).annotators_key


def _client(args: argparse.Namespace):
    from pipelines.annotation.client import LabelStudioClient

    return LabelStudioClient.from_credentials(label_studio_credentials(args))


def _account(client, email: str) -> dict:
    from pipelines.cli import CommandError

    for user in client.users():
        if str(user.get("email", "")).lower() == email.lower():
            return user
    raise CommandError(f"annotator {email}", "no such Label Studio account",
                       f"create it first: hopchain annotators add {email}")


def register_account(store, key: str, client, email: str, kind: str = "person") -> bool:
    """Register the Label Studio account ``email`` (True when the registry changed)."""
    from pipelines.annotation.registry import load, save

    registry = load(store, key)
    user = _account(client, email)
    changed = registry.register(int(user["id"]), str(user.get("email") or email), kind,  # type: ignore[arg-type]
                                platform={int(client.whoami()["id"])})
    if changed:
        save(store, key, registry)
    return changed


def _annotators_register(args: argparse.Namespace) -> int:
    from pipelines.annotation.registry import RegistryError

    store, key = _registry_context(args)
    with _client(args) as client:
        try:
            changed = register_account(store, key, client, args.email, "simulated" if args.simulated else "person")
        except RegistryError as err:
            print(f"error: annotator {args.email}: {err} (register the people who annotate, not the platform)",
                  file=sys.stderr)
            return 2
    print(f"{args.email}: {'registered' if changed else 'already registered'}")
    return 0


def _annotators_unregister(args: argparse.Namespace) -> int:
    from pipelines.annotation.registry import load, save

    store, key = _registry_context(args)
    with _client(args) as client:
        user = _account(client, args.email)
    registry = load(store, key)
    changed = registry.unregister(int(user["id"]))
    if changed:
        save(store, key, registry)
    print(f"{args.email}: {'unregistered' if changed else 'was not registered'}")
    return 0


def _annotators_list(args: argparse.Namespace) -> int:
    from pipelines.annotation.registry import load

    store, key = _registry_context(args)
    for a in load(store, key).annotators:
        print(f"{a.user_id}\t{a.email}\t{a.kind}\t{'active' if a.active else 'inactive'}\t"
              f"{a.registered_at.isoformat()}")
    return 0


def _project(args: argparse.Namespace, client: LabelStudioClient) -> tuple[int, ProjectState]:
    """The project to check (``--project ID``, else the one titled ``annotation.project_title``) and what
    the platform set on it (from the configuration: title, annotators_required, handout)."""
    from pipelines.annotation.guard import expected_state
    from pipelines.cli import CommandError
    from pipelines.config import load_params

    cfg = load_params(args.params, args.profile).annotation
    expected = expected_state(cfg.project_title, cfg.annotators_required, cfg.handout)
    if args.project is not None:
        return int(args.project), expected
    project = client.find_project(cfg.project_title)
    if project is None:
        raise CommandError(f"project {cfg.project_title!r}", "no such project in Label Studio",
                           "the first push creates it; if it was renamed, give its id: --project ID")
    return int(project["id"]), expected


def _missing(pid: int) -> Exception:
    from pipelines.cli import CommandError

    return CommandError(f"project {pid}", "missing in Label Studio",
                        "its open batches are decided from the annotation journal; the next push creates a new one")


def _project_check(args: argparse.Namespace) -> int:
    from pipelines.annotation.guard import MISSING, check_project

    with _client(args) as client:
        pid, expected = _project(args, client)
        drifts = check_project(client, pid, expected)
    if any(d.field == "project" and d.actual == MISSING for d in drifts):
        raise _missing(pid)
    for d in drifts:
        print(f"project {pid}: {d.describe()}")
    if not drifts:
        print(f"project {pid}: as the platform set it")
    return 1 if drifts else 0


def _project_repair(args: argparse.Namespace) -> int:
    from pipelines.annotation.client import LabelStudioError
    from pipelines.annotation.guard import ProjectMissing, repair_project
    from pipelines.cli import CommandError

    with _client(args) as client:
        pid, expected = _project(args, client)
        try:
            changed = repair_project(client, pid, expected)
        except ProjectMissing:
            raise _missing(pid) from None
        except LabelStudioError as err:
            if err.status_code != 400:
                raise
            body = err.body if isinstance(err.body, dict) else {"detail": err.body}
            why = "; ".join(str(m) for v in (body.get("validation_errors") or {}).values()
                            for m in (v if isinstance(v, list) else [v])) or str(body.get("detail"))
            raise CommandError(f"project {pid}", f"Label Studio refused the repair: {' '.join(why.split())[:200]}",
                               "annotations made under the changed labeling config do not fit the platform's; "
                               "delete them in Label Studio, then repair again") from None
    for d in changed:
        print(f"project {pid}: undone: {d.describe()}")
    print(f"project {pid}: as the platform set it" + ("; its held batches go on at the next pass" if changed else ""))
    return 0


def _consensus(args: argparse.Namespace) -> int:
    from pipelines.annotation.consensus import decide, records_from_table
    from pipelines.config import load_params
    from pipelines.contracts import read_parquet, write_parquet_atomic
    from pipelines.contracts.rejects import rejects_table

    cfg = load_params(args.params, args.profile).annotation
    required = args.required or cfg.annotators_required
    questions = read_parquet(args.questions, "questions")
    annotations = read_parquet(args.annotations)
    records, invalid = records_from_table(annotations)
    generated = dict(zip(questions.column("question_id").to_pylist(), questions.column("answer").to_pylist(),
                         strict=True))
    result = decide(records, generated, required, cfg.early_stop)  # as the platform decides
    rejects = invalid + result.ignored
    out: Path = args.out
    write_parquet_atomic(result.consensus_table(), out)
    write_parquet_atomic(
        rejects_table(rejects),
        args.rejects or out.with_name(out.stem + ".rejects.parquet"),
    )
    write_parquet_atomic(result.stats_table(), args.stats or out.with_name(out.stem + ".annotators.parquet"))
    print(
        json.dumps(
            {
                **result.status_counts(),
                "annotations": annotations.num_rows,
                "annotations_counted": len(result.counted),
                "annotations_rejected": len(invalid),
                "annotations_ignored": len(result.ignored),
                "out": str(out),
            }
        )
    )
    return 0
