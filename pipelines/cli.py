"""The ``hopchain`` command: every stage runs from here, with or without Airflow.

Each command group lives in its own module exposing ``register(subparsers)``; modules import
heavy libraries (torch, pandas, GX) only inside their handlers, so ``hopchain --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.config import Params
    from pipelines.ops.doctor import Services
    from pipelines.runner import Runner

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

USAGE = 2  # exit status: the command line or its input is wrong (fix the call)
FAILURE = 1  # exit status: a service, a model or the data refused to work (fix the environment)


class CommandError(Exception):
    """An expected failure of a command: ``error: <what>: <why> (<fix>)``, exit status ``FAILURE``."""

    exit_code = FAILURE

    def __init__(self, what: str, why: str, fix: str = ""):
        super().__init__(f"{what}: {why}")
        self.what, self.why, self.fix = what, why, fix

    def line(self) -> str:
        return f"error: {self.what}: {self.why}" + (f" ({self.fix})" if self.fix else "")


class InputError(CommandError):
    """Missing, unreadable or malformed input given on the command line: exit status ``USAGE``."""

    exit_code = USAGE


@dataclass(frozen=True)
class Explained:
    code: int
    line: str


def _one_line(text: object, limit: int = 300) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def explain(err: BaseException) -> Explained | None:
    """The one-line message and exit status for an expected failure, or None for a bug (which keeps
    its traceback). Libraries are imported only if already loaded: nothing heavy is pulled in here."""
    if isinstance(err, CommandError):
        return Explained(err.exit_code, err.line())
    from pipelines.config import ConfigError
    from pipelines.contracts import ContractError
    from pipelines.stack.process import StackError

    if isinstance(err, ConfigError):
        return Explained(USAGE, f"error: {err}")
    if isinstance(err, ContractError):
        return Explained(USAGE, f"error: {err} (the table must follow its contract: docs/ and pipelines/contracts/)")
    if isinstance(err, StackError):
        return Explained(FAILURE, f"error: {err}")
    if isinstance(err, FileNotFoundError | IsADirectoryError | NotADirectoryError | PermissionError):
        kinds: list[tuple[type, str]] = [(FileNotFoundError, "no such file or directory"),
                                         (IsADirectoryError, "is a directory, not a file"),
                                         (NotADirectoryError, "not a directory"),
                                         (PermissionError, "permission denied")]
        why = next(text for kind, text in kinds if isinstance(err, kind))
        fix = "check the file's permissions" if isinstance(err, PermissionError) else "check the path"
        if err.filename:
            if err.strerror and err.errno is not None and err.strerror != os.strerror(err.errno):
                return Explained(USAGE, f"error: {err.filename}: {err.strerror}")  # our own sentence
            return Explained(USAGE, f"error: {err.filename}: {why} ({fix})")
        text = _one_line(err)
        if " " not in text:  # pyarrow: the message is the path itself
            return Explained(USAGE, f"error: {text}: {why} ({fix})")
        return Explained(USAGE, f"error: {text} ({fix})")
    mods = sys.modules
    vlm = mods.get("pipelines.vlm.backends")
    if vlm is not None and isinstance(err, vlm.ModelUnavailable):
        return Explained(FAILURE, f"error: {err.what}: {err.why} ({err.fix})")
    if vlm is not None and isinstance(err, vlm.VLMRequestError):
        return Explained(FAILURE, f"error: vlm endpoint: {_one_line(err)} (check vlm.openai.base_url and the "
                                  "server; `hopchain doctor` checks it)")
    pa = mods.get("pyarrow")
    if pa is not None and isinstance(err, pa.ArrowInvalid | pa.ArrowIOError):
        return Explained(USAGE, f"error: input is not a readable Parquet table: {_one_line(err)} "
                                "(check the file given on the command line)")
    minio_error = mods.get("minio.error")
    if minio_error is not None and isinstance(err, minio_error.S3Error):
        if err.code in ("NoSuchKey", "NoSuchBucket", "NoSuchObject"):
            where = f"s3://{err.bucket_name or ''}/{err.object_name or ''}"
            return Explained(USAGE, f"error: {where}: {err.code} (check the s3:// path)")
        refused = err.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied")
        fix = ("check HOPCHAIN_S3_ACCESS_KEY / HOPCHAIN_S3_SECRET_KEY" if refused
               else "check the bucket and key")
        return Explained(FAILURE, f"error: object store: {err.code}: {_one_line(err.message)} ({fix})")
    urllib3_exc = mods.get("urllib3.exceptions")
    if urllib3_exc is not None and isinstance(err, urllib3_exc.MaxRetryError | urllib3_exc.NewConnectionError):
        reason = _one_line(getattr(err, "reason", None) or err, 200)
        return Explained(FAILURE, f"error: object store: cannot connect: {reason} "
                                  "(start the S3 server or fix HOPCHAIN_S3_ENDPOINT; `hopchain doctor` checks it)")
    api_error = mods.get("label_studio_sdk.core.api_error")
    if api_error is not None and isinstance(err, api_error.ApiError):
        if err.status_code in (401, 403):
            return Explained(FAILURE, f"error: Label Studio: token refused (HTTP {err.status_code}) "
                                      "(set HOPCHAIN_LS_TOKEN to a valid legacy API token)")
        return Explained(FAILURE, f"error: Label Studio: HTTP {err.status_code}: {_one_line(err.body, 200)} "
                                  "(check the server's log)")
    httpx = mods.get("httpx")
    if httpx is not None and isinstance(err, httpx.TransportError):
        url = ""
        try:
            url = str(err.request.url)
        except RuntimeError:  # no request attached
            pass
        return Explained(FAILURE, f"error: cannot reach {url or 'the service'}: {type(err).__name__} "
                                  "(start the service or fix its URL; `hopchain doctor` checks it)")
    if isinstance(err, ConnectionError | TimeoutError):
        return Explained(FAILURE, f"error: connection failed: {_one_line(err)} (check the service; "
                                  "`hopchain doctor` checks every service)")
    return None


# -- the stage commands: one runner, the run layout of the store ------------------------------------------
def add_run_options(p: argparse.ArgumentParser) -> None:
    """``--checks`` and ``--resume``: what a stage command adds to the runner's defaults."""
    p.add_argument("--checks", action="store_true",
                   help="run the stage's Great Expectations checks as the DAG does (results and Data Docs under "
                        "the run root's validation/ and datadocs/)")
    p.add_argument("--resume", action="store_true", help="skip the shards already done (their stats exist)")


def stage_runner(args: argparse.Namespace, root: str) -> Runner:
    """The runner of a stage command on run root ``root`` (a folder or ``s3://bucket/<runs>/<run id>``: the
    same layout as the DAGs' runs, :func:`pipelines.runner.open_root`)."""
    from pipelines.config import load_params
    from pipelines.runner import Runner, open_root

    return Runner(open_root(root, load_params(args.params, args.profile)), checks=args.checks, resume=args.resume,
                  progress=True)


def root_shards(runner: Runner, shard: int | None, table: str = "manifest") -> list[int]:
    """``[shard]``, or every shard of ``table`` in the run root (none: an input error naming the folder)."""
    if shard is not None:
        return [shard]
    shards = runner.env.shard_numbers(table)
    if not shards:
        raise FileNotFoundError(2, f"no {table} shards (run `hopchain ingest --out` or `hopchain import-coco "
                                   "--out` on this root first)", runner.env.where(table))
    return shards


# -- hopchain doctor (the checks are pipelines.ops.doctor; only the command line reaches the local stack) --------
def _doctor_services(params: Params) -> Services:
    """Credentials as the other commands find them: the environment, else the local stack's files."""
    from pipelines.annotation.client import LabelStudioCredentials
    from pipelines.ops.doctor import Services
    from pipelines.store import S3Credentials

    services = Services()
    env_s3 = S3Credentials.from_env()
    if env_s3 is not None:
        services.s3, services.s3_origin = env_s3, " (HOPCHAIN_S3_*)"
    if os.environ.get("HOPCHAIN_LS_URL") and os.environ.get("HOPCHAIN_LS_TOKEN"):
        services.label_studio = LabelStudioCredentials(os.environ["HOPCHAIN_LS_URL"].rstrip("/"),
                                                       os.environ["HOPCHAIN_LS_TOKEN"])
        services.label_studio_origin = " (HOPCHAIN_LS_*)"
    if services.s3 is None or services.label_studio is None:
        from pipelines.stack import LocalStack
        from pipelines.stack.services import read_secret_file

        stack = LocalStack(params)
        s3_file, ls_file = stack.s3.credentials_file(), stack.labelstudio.credentials_file()
        if services.s3 is None and s3_file.exists():
            services.s3, services.s3_origin = S3Credentials.from_file(s3_file), " (local stack)"
        if services.label_studio is None and ls_file.exists():
            data = read_secret_file(ls_file)
            data["url"] = stack.labelstudio.url()
            services.label_studio = LabelStudioCredentials.from_mapping(data)
            services.label_studio_origin = " (local stack)"
    return services


def _doctor(args: argparse.Namespace) -> int:
    from pipelines.config import load_params
    from pipelines.ops.doctor import profile_checks, run_checks, summary_line

    params = load_params(args.params, args.profile)
    print(f"hopchain doctor: profile {params.profile}", flush=True)
    checks = profile_checks(params, _doctor_services(params), models=not args.skip_models,
                            s3=not args.skip_s3, label_studio=not args.skip_label_studio)
    results = run_checks(checks)
    for r in results:
        print(r.line(), flush=True)
    ok = all(r.ok for r in results)
    print(summary_line(results), file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def register_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor", help="check that the selected profile can run here (models, GPU, endpoint, S3, Label Studio)",
        description="One line per check, ok or FAILED with the fix; exit status 1 if any check failed. "
        "Models must resolve without downloading unless HOPCHAIN_ALLOW_DOWNLOADS=1.",
    )
    p.add_argument("--skip-models", action="store_true", help="do not check models and GPUs")
    p.add_argument("--skip-s3", action="store_true", help="do not check the object store")
    p.add_argument("--skip-label-studio", action="store_true", help="do not check Label Studio")
    p.set_defaults(handler=_doctor)


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
    register_doctor(sub)
    return parser


def run_cli(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv``, set up logging and run the chosen sub-command's handler. Shared with
    ``hopchain-demo``.

    Every expected failure (:func:`explain`) is one line on stderr, ``error: <what>: <why> (<fix>)``,
    with exit status 2 for a wrong call or input and 1 for a failure of a service, a model or the
    data; the traceback is printed only with ``-v``. Model hub downloads are off
    (``HF_HUB_OFFLINE=1``) unless ``HOPCHAIN_ALLOW_DOWNLOADS=1``.
    """
    args = parser.parse_args(argv)
    if os.environ.get("HOPCHAIN_ALLOW_DOWNLOADS", "").strip().lower() not in ("1", "true", "yes"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("great_expectations", "httpx", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        explained = explain(err)
        if explained is None:
            raise
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(explained.line, file=sys.stderr)
        return explained.code


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
