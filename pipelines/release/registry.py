"""The dataset registry: a git repository of DVC releases, tagged ``vYYYY.MM.DD[.N]``.

One release (:func:`publish`), step by step, in the registry's working copy under the release
work folder (``<home>/release/<name>/checkout``, kept between releases and reset to the
registry's branch each time; the DVC cache beside it in ``cache/`` is kept too, and files are
linked from it, so unchanged parts cost neither a download nor a re-hash):

1. copy the repository's ``dvc.yaml``, the code its stages list as ``deps`` and the ``release``
   section of the params (as ``params.yaml``) into the working copy;
2. ``dvc checkout data`` (``dvc pull`` for what the cache lacks), append one part to ``data/``
   (:func:`pipelines.release.snapshot.append_part`) and ``dvc add data`` — nothing new: the
   current tag is returned;
3. ``dvc repro`` (stages ``build`` and ``card``);
4. release notes with ``dvc metrics diff`` against the previous tag; ``git commit``;
5. ``dvc push`` with ``AWS_MAX_ATTEMPTS=1`` under an outer timeout (``push_timeout_s``): a dead
   object store fails within seconds with :class:`PushError`; nothing is tagged or published then;
6. verify: ``dvc status -c`` is clean and every pushed object's ETag equals its md5 name;
7. annotated tag (message = the notes) and one atomic ``git push`` of the branch and the tag.

Only the new part's files (and a withdrawal's replaced shard) are new DVC objects, so a push sends
about the share of new data plus the small derived files. Rerunning after a failure repeats the
cheap steps and pushes only the objects the remote lacks. Credentials reach DVC only through the
environment (or a ``dvc-config.local`` file the operator puts in the work folder, copied to the
git-ignored ``.dvc/config.local``): no committed file ever holds a secret.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from pipelines.config import REPO_ROOT, Params
from pipelines.release.dvc import ToolError, dvc, git, tool_env
from pipelines.release.snapshot import PartSummary, ReleaseSources, SourceReader, append_part, compact_parts
from pipelines.store import S3Credentials
from pipelines.store.layout import dvc_remote_object

TAG_RE = re.compile(r"^v(\d{4})\.(\d{2})\.(\d{2})(?:\.(\d+))?$")
DVC_YAML = REPO_ROOT / "dvc.yaml"
REMOTE = "storage"
BRANCH = "main"
NOTES_FILE = "RELEASE_NOTES.md"
_PUSHED_RE = re.compile(r"(\d+) files? pushed")


class ReleaseError(RuntimeError):
    """A release could not be published; the message says what to do."""


class PushError(ReleaseError):
    """``dvc push`` failed or timed out (object store down?): nothing was tagged."""


class ChecksumError(ReleaseError):
    """Data on disk or in the remote does not match the hashes recorded in git."""


# -- tags ------------------------------------------------------------------------------------------
def _tag_key(tag: str) -> tuple[int, int, int, int]:
    m = TAG_RE.match(tag)
    if not m:
        raise ValueError(f"not a release tag: {tag!r}")
    y, mo, d, n = m.groups()
    return int(y), int(mo), int(d), int(n or 1)


def release_tags(tags: list[str]) -> list[str]:
    """Release tags (``vYYYY.MM.DD`` / ``vYYYY.MM.DD.N``) in release order; others ignored."""
    return sorted((t for t in tags if TAG_RE.match(t)), key=_tag_key)


def next_tag(existing: list[str], day: dt.date) -> str:
    """``vYYYY.MM.DD`` for the first release of ``day``, then ``.2``, ``.3``, ..."""
    base = f"v{day:%Y.%m.%d}"
    taken = set(existing)
    if base not in taken:
        return base
    n = 2
    while f"{base}.{n}" in taken:
        n += 1
    return f"{base}.{n}"


def previous_tag(existing: list[str]) -> str | None:
    tags = release_tags(existing)
    return tags[-1] if tags else None


# -- registry location -----------------------------------------------------------------------------
def is_local_url(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url)


def check_registry_url(url: str) -> None:
    """Refuse URLs that embed a password or token (they would end up in git config and logs)."""
    if not is_local_url(url) and urlparse(url).password:
        raise ReleaseError("the registry URL embeds a password/token; use a git credential helper or SSH key")


def ensure_registry(url: str) -> None:
    """Create the local bare repository at ``url`` if it is a local path that does not exist.

    ``--shared=0600``: git keeps every object and folder it writes there owner-only (0400/0700),
    whatever the umask of the process that pushes (the stack's tasks run with 077, a CLI or a test
    process may not); trainers clone it as the same user or through a server of their own."""
    check_registry_url(url)
    if not is_local_url(url):
        return
    path = Path(url)
    if (path / "HEAD").exists():
        return
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    git("init", "--bare", "--quiet", "--shared=0600", f"--initial-branch={BRANCH}", str(path), cwd=None)


def default_registry_url(params: Params, home: Path) -> str:
    return params.release.registry_url or str(home / "registry.git")


# -- outputs and checksums -------------------------------------------------------------------------
@dataclass(frozen=True)
class TrackedOut:
    """One DVC output of a release: ``md5`` ends with ``.dir`` for folders."""

    path: str
    md5: str
    cached: bool


def _yaml_outs(entries: list[Any]) -> dict[str, bool]:
    outs: dict[str, bool] = {}
    for entry in entries or []:
        if isinstance(entry, str):
            outs[entry] = True
        else:
            for path, opts in entry.items():
                outs[path] = bool((opts or {}).get("cache", True))
    return outs


def tracked_outputs(wc: Path) -> list[TrackedOut]:
    """Every output recorded in ``dvc.lock`` and ``*.dvc`` files of the working copy ``wc``."""
    cached: dict[str, bool] = {}
    stages = (yaml.safe_load((wc / "dvc.yaml").read_text()) or {}).get("stages", {})
    for stage in stages.values():
        cached.update(_yaml_outs(stage.get("outs", [])))
        cached.update(_yaml_outs(stage.get("metrics", [])))
        cached.update(_yaml_outs(stage.get("plots", [])))
    outs: list[TrackedOut] = []
    lock = yaml.safe_load((wc / "dvc.lock").read_text()) if (wc / "dvc.lock").exists() else {}
    for stage in (lock or {}).get("stages", {}).values():
        for o in stage.get("outs", []):
            outs.append(TrackedOut(o["path"], o["md5"], cached.get(o["path"], True)))
    for f in sorted(p for p in wc.glob("*.dvc") if p.is_file()):
        for o in (yaml.safe_load(f.read_text()) or {}).get("outs", []):
            outs.append(TrackedOut(o["path"], o["md5"], o.get("cache", True)))
    return outs


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_object(cache: Path, md5: str) -> Path:
    return cache / "files" / "md5" / md5[:2] / md5[2:]


def cached_objects(wc: Path, cache: Path | None = None) -> dict[str, str]:
    """``{md5: workspace path}`` of every cached object of the release (``.dir`` listings included)."""
    cache = cache or wc / ".dvc" / "cache"
    objects: dict[str, str] = {}
    for out in tracked_outputs(wc):
        if not out.cached:
            continue
        objects[out.md5] = out.path
        if out.md5.endswith(".dir"):
            listing = json.loads(_cache_object(cache, out.md5).read_text())
            for entry in listing:
                objects[entry["md5"]] = f"{out.path}/{entry['relpath']}"
    return objects


def verify_checkout(wc: Path, cache: Path | None = None) -> int:
    """Recompute the md5 of every cached data file in ``wc``; raise :class:`ChecksumError` on any
    mismatch or missing file. Returns the number of files checked."""
    checked, bad = 0, []
    for md5, rel in cached_objects(wc, cache).items():
        if md5.endswith(".dir"):
            continue
        path = wc / rel
        if not path.is_file():
            bad.append(f"{rel}: missing")
        elif _md5(path) != md5:
            bad.append(f"{rel}: md5 differs from the recorded {md5}")
        checked += 1
    if bad:
        raise ChecksumError(f"{len(bad)} of {checked} release files do not match dvc.lock: " + "; ".join(bad[:5]))
    return checked


def verify_remote(wc: Path, creds: S3Credentials, bucket: str, prefix: str, cache: Path | None = None,
                  skip: set[str] | frozenset[str] = frozenset()) -> int:
    """Every cached object of the release (except ``skip``: those an earlier release verified)
    exists in ``s3://bucket/prefix`` and, where the ETag is a plain md5 (single-part upload),
    equals its content hash. Returns the number of objects checked."""
    from minio.error import S3Error

    from pipelines.store import ObjectStore

    store = ObjectStore(creds, bucket, timeout_s=10, retries=0)
    bad = []
    objects = {md5: rel for md5, rel in cached_objects(wc, cache).items() if md5 not in skip}
    for md5, rel in objects.items():
        key = dvc_remote_object(prefix, md5)
        try:
            etag = store.client.stat_object(bucket, key).etag.strip('"')
        except S3Error as err:
            bad.append(f"{rel}: {err.code}")
            continue
        if "-" not in etag and etag != md5.removesuffix(".dir"):
            bad.append(f"{rel}: remote ETag {etag} != {md5}")
    if bad:
        raise ChecksumError(f"{len(bad)} of {len(objects)} objects in s3://{bucket}/{prefix} are wrong: "
                            + "; ".join(bad[:5]))
    return len(objects)


# -- publishing ------------------------------------------------------------------------------------
@dataclass
class PublishResult:
    tag: str
    commit: str
    notes: str
    metrics: dict[str, Any]
    pushed_files: int
    push_s: float
    reused: bool = False  # nothing new: the existing release at HEAD was returned
    timings: dict[str, float] = field(default_factory=dict)
    part: PartSummary | None = None  # what this release appended to data/


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReleaseError(f"another release is running in {folder}") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def stage_code_deps(dvc_yaml: Path = DVC_YAML) -> list[str]:
    """The code files the stages of ``dvc_yaml`` list as ``deps`` (paths under ``pipelines/``)."""
    stages = (yaml.safe_load(dvc_yaml.read_text()) or {}).get("stages", {})
    deps = {d for s in stages.values() for d in s.get("deps", []) if str(d).startswith("pipelines/")}
    return sorted(deps)


def _install_definition(wc: Path, params: Params) -> None:
    """dvc.yaml, the code it depends on and the release params, copied into the working copy."""
    shutil.copyfile(DVC_YAML, wc / "dvc.yaml")
    shutil.rmtree(wc / "pipelines", ignore_errors=True)
    for rel in stage_code_deps():
        dest = wc / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO_ROOT / rel, dest)
    text = "# Parameters of this release (the `release` section of the platform's params.yaml).\n"
    text += yaml.safe_dump({"release": params.release.model_dump()}, sort_keys=True)
    (wc / "params.yaml").write_text(text)


def _configure_dvc(wc: Path, workdir: Path, params: Params, endpoint: str, env: dict[str, str]) -> None:
    cfg = params.release
    if not (wc / ".dvc").exists():
        dvc("init", "--quiet", cwd=wc, env=env)
        dvc("config", "core.analytics", "false", cwd=wc, env=env)
        dvc("remote", "add", "--default", REMOTE, f"s3://{cfg.dvc_remote_bucket}/{cfg.dvc_remote_prefix}",
            cwd=wc, env=env)
        dvc("remote", "modify", REMOTE, "region", "us-east-1", cwd=wc, env=env)
    # The endpoint is configuration (committed); credentials never are.
    dvc("remote", "modify", REMOTE, "url", f"s3://{cfg.dvc_remote_bucket}/{cfg.dvc_remote_prefix}", cwd=wc, env=env)
    dvc("remote", "modify", REMOTE, "endpointurl", endpoint, cwd=wc, env=env)
    local_cfg = workdir / "dvc-config.local"
    if local_cfg.exists():
        shutil.copyfile(local_cfg, wc / ".dvc" / "config.local")
    dvc("cache", "dir", "--local", str((workdir / "cache").resolve()), cwd=wc, env=env)
    # the working copy links its files from the cache beside it: no copy of the dataset per release
    dvc("config", "--local", "cache.type", "reflink,hardlink,copy", cwd=wc, env=env)


def _head(wc: Path, env: dict[str, str]) -> str | None:
    try:
        return git("rev-parse", "--verify", "--quiet", "HEAD", cwd=wc, env=env).stdout.strip()
    except ToolError:
        return None


def _notes(tag: str, prev: str | None, metrics: dict[str, Any], diff_md: str, params: Params) -> str:
    rel = metrics["released"]
    lines = [
        f"{params.release.name} {tag}",
        "",
        f"Released questions: {rel['questions']} (train {rel['train_questions']}, eval {rel['eval_questions']}) "
        f"over {rel['images']} images; acceptance rate {metrics['acceptance_rate']}; "
        f"generator precision {metrics['generator_precision']}.",
        "",
    ]
    if prev:
        lines += [f"Metrics diff against {prev} (`dvc metrics diff {prev}`):", "", diff_md.strip() or "No changes.", ""]
    else:
        lines += ["First release: no previous release to compare with.", ""]
    return "\n".join(lines)


def _working_copy(workdir: Path, registry_url: str, env: dict[str, str]) -> Path:
    """The registry's working copy, reset to the branch of the registry (cloned on first use).

    Kept between releases (with DVC's state, so unchanged files are not re-hashed); anything a
    failed release left behind is discarded by the reset and ``git clean`` (git-ignored DVC data
    stays, it is checked out again from the cache)."""
    wc = workdir / "checkout"
    if (wc / ".git").is_dir():
        try:
            git("fetch", "--quiet", "--tags", "--force", "origin", cwd=wc, env=env)
            remote_head = git("ls-remote", "--heads", "origin", BRANCH, cwd=wc, env=env).stdout.strip()
            if remote_head:  # discard whatever a failed release committed locally
                git("checkout", "--quiet", "-B", BRANCH, f"origin/{BRANCH}", cwd=wc, env=env)
                git("reset", "--quiet", "--hard", f"origin/{BRANCH}", cwd=wc, env=env)
                git("clean", "--quiet", "-fd", cwd=wc, env=env)
                return wc
            # the registry is still empty (a first release that failed): start from a fresh clone
        except ToolError:
            shutil.rmtree(wc, ignore_errors=True)  # a broken copy: start again from the registry
    shutil.rmtree(wc, ignore_errors=True)
    git("clone", "--quiet", registry_url, str(wc), cwd=workdir, env=env)
    if _head(wc, env) is None:
        git("symbolic-ref", "HEAD", f"refs/heads/{BRANCH}", cwd=wc, env=env)
    return wc


def _checkout_data(wc: Path, params: Params, creds: S3Credentials, env: dict[str, str]) -> None:
    """``data/`` as recorded at HEAD: from the local cache, pulling only the objects it lacks."""
    try:
        dvc("checkout", "--quiet", "data.dvc", cwd=wc, env=env, timeout_s=params.release.repro_timeout_s)
    except ToolError:
        dvc("pull", "--quiet", "data.dvc", cwd=wc, env=tool_env(creds), timeout_s=params.release.repro_timeout_s)


def publish(
    params: Params,
    sources: ReleaseSources,
    *,
    creds: S3Credentials,
    workdir: Path,
    registry_url: str,
    day: dt.date | None = None,
    withdraw_images: tuple[str, ...] = (),
    compact: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PublishResult:
    """Build, push, verify, commit and tag one release; see the module docstring for the steps.

    ``creds`` serve both the inputs in the object store and the DVC remote (same S3 server).
    ``withdraw_images`` removes the released questions of those images (listed in
    ``data/removals.parquet``). ``compact=True`` publishes instead a rewrite of every shard into one
    new part (``sources`` unused): a deliberate full upload, e.g. after many withdrawals.
    Raises :class:`PushError` when the object store fails the push (nothing tagged; rerun to
    resume), :class:`ChecksumError` when verification fails, :class:`ReleaseError` otherwise.
    """
    say = progress or (lambda _m: None)
    cfg = params.release
    day = day or dt.date.today()
    workdir = Path(workdir).resolve()
    env = tool_env(creds)
    timings: dict[str, float] = {}
    with _locked(workdir):
        ensure_registry(registry_url)
        wc = _working_copy(workdir, registry_url, env)
        _configure_dvc(wc, workdir, params, creds.url, env)
        _install_definition(wc, params)

        verified: set[str] = set()
        if (wc / "data.dvc").exists():
            say("dvc checkout data (from the local cache; pulls what it lacks)")
            _checkout_data(wc, params, creds, env)
            verified = set(cached_objects(wc, workdir / "cache"))  # pushed and verified by the last release
        else:
            shutil.rmtree(wc / "data", ignore_errors=True)  # left by a first release that failed
        reader = SourceReader(creds, params.store.bucket)
        if compact:
            say("compacting data/ into one part")
            part = compact_parts(wc / "data", cfg)
        else:
            say("appending a part to data/")
            part = append_part(sources, wc / "data", cfg, reader, withdraw_images=withdraw_images, progress=say)
        head = _head(wc, env)
        if not part.changed and head:
            at_head = release_tags(git("tag", "--points-at", "HEAD", cwd=wc, env=env).stdout.split())
            if at_head:
                say(f"nothing new since {at_head[-1]}")
                metrics = json.loads((wc / "metrics.json").read_text())
                return PublishResult(at_head[-1], head, "", metrics, 0, 0.0, reused=True, timings=timings, part=part)
        dvc("add", "--quiet", "data", cwd=wc, env=env, timeout_s=cfg.repro_timeout_s)
        say("dvc repro")
        timings["repro_s"] = dvc("repro", cwd=wc, env=env, timeout_s=cfg.repro_timeout_s).elapsed_s
        metrics = json.loads((wc / "metrics.json").read_text())

        tags = git("tag", "--list", "v*", cwd=wc, env=env).stdout.split()
        git("add", "--all", cwd=wc, env=env)
        changed = git("status", "--porcelain", cwd=wc, env=env).stdout.strip()
        head = _head(wc, env)
        if not changed and head:
            at_head = release_tags(git("tag", "--points-at", "HEAD", cwd=wc, env=env).stdout.split())
            if at_head:
                say(f"data and code unchanged: release {at_head[-1]} already holds them")
                return PublishResult(at_head[-1], head, "", metrics, 0, 0.0, reused=True, timings=timings, part=part)
        tag, prev = next_tag(tags, day), previous_tag(tags)
        diff_md = dvc("metrics", "diff", prev, "--md", cwd=wc, env=env).stdout if prev else ""
        notes = _notes(tag, prev, metrics, diff_md, params)
        (wc / NOTES_FILE).write_text(notes + "\n")
        git("add", "--all", cwd=wc, env=env)
        git("commit", "--quiet", "-m", f"Release {tag}", cwd=wc, env=env)
        commit = _head(wc, env) or ""

        pushed, push_s = push_data(wc, params, creds, say)
        timings["push_s"] = push_s
        say("verifying the remote")
        status = dvc("status", "--cloud", "--json", cwd=wc, env=tool_env(creds, fail_fast=True),
                     timeout_s=cfg.push_timeout_s)
        if json.loads(status.stdout or "{}"):
            raise ChecksumError(f"after the push, `dvc status -c` still reports differences: {status.stdout[:500]}")
        verify_remote(wc, creds, cfg.dvc_remote_bucket, cfg.dvc_remote_prefix, workdir / "cache", skip=verified)

        git("tag", "--annotate", tag, "--file", str(wc / NOTES_FILE), cwd=wc, env=env)
        git("push", "--quiet", "--atomic", "origin", f"HEAD:refs/heads/{BRANCH}", f"refs/tags/{tag}",
            cwd=wc, env=env)
        say(f"released {tag}")
        return PublishResult(tag, commit, notes, metrics, pushed, push_s, timings=timings, part=part)


def push_data(wc: Path, params: Params, creds: S3Credentials,
              progress: Callable[[str], None] | None = None) -> tuple[int, float]:
    """``dvc push`` that fails fast. Returns ``(files pushed, seconds)``; raises :class:`PushError`."""
    cfg = params.release
    say = progress or (lambda _m: None)
    target = f"s3://{cfg.dvc_remote_bucket}/{cfg.dvc_remote_prefix} at {creds.url}"
    say(f"dvc push to {target}")
    try:
        res = dvc("push", "--jobs", str(cfg.push_jobs), cwd=wc, env=tool_env(creds, fail_fast=True),
                  timeout_s=cfg.push_timeout_s)
    except ToolError as err:
        if err.timed_out:
            why = f"no answer within {cfg.push_timeout_s:.0f}s"
        else:
            errors = [ln for ln in err.stderr.splitlines() if "ERROR" in ln or "rror" in ln]
            why = (errors[-1] if errors else str(err).splitlines()[-1]).strip()
        raise PushError(
            f"dvc push to {target} failed after {err.elapsed_s:.1f}s: {why}. Is the object store "
            f"running? Nothing was tagged or published; rerun the same release command once it is "
            f"back: only the missing objects are sent, then verified."
        ) from None
    found = _PUSHED_RE.search(res.stdout + res.stderr)
    return (int(found.group(1)) if found else 0), res.elapsed_s
