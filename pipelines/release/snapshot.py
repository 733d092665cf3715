"""Append one part to a release's DVC-tracked data folder (``data/``, layout in
:mod:`pipelines.release.assemble`).

A table source is a local Parquet file, a local folder of ``*.parquet`` shards, ``s3://bucket/key``
or ``s3://bucket/prefix/`` (every ``.parquet`` under it). Images are read from the manifest
``uri`` (``s3://bucket/key`` or a local path), from the object store (``images_from="s3"``: bare
keys go to the platform bucket), or from a local folder (``images_from=DIR``: ``DIR/<file name of
the uri>``, ``DIR/<uri>`` or ``DIR/<image_id>.<ext>``). Every image's bytes are checked against its
``image_id`` (sha256); a missing or altered image is a reject row, not an error — unless every
image fails, which means the source is wrong and raises :class:`SnapshotError`.

A part adds what the sources hold that the data folder does not: decisions not recorded yet
(its ``meta`` tables), the rows of newly accepted questions with their image bytes (its shards),
and the instances and manifest rows of their images. A released question whose newest decision is
no longer ``accepted``, or whose image is withdrawn, is removed: listed in ``removals.parquet`` and
dropped from the one shard that held it (rewritten as ``...-rNNNNN.parquet``). Files of earlier
parts are never touched otherwise, so publishing x% more questions adds about x% of the bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.config import SIMULATED_ENV, Refused, ReleaseConfig, simulated_allowed
from pipelines.contracts import SIMULATED_SOURCES, conform, to_table, write_parquet_atomic
from pipelines.contracts.files import write_atomic
from pipelines.release.assemble import (
    INPUT_TABLES,
    META_DIR,
    PROVENANCE_FILE,
    REJECTS_FILE,
    REMOVALS,
    REMOVALS_FILE,
    SPLITS,
    data_shards,
    image_file_name,
    part_name,
    part_numbers,
    plan_shards,
    read_meta_table,
    read_removals,
    reject,
    select_rows,
    shard_name,
    shard_table,
)
from pipelines.store import ObjectStore, S3Credentials

_RUN_ID = re.compile(r"(?:^|/)runs/([^/]+)/")


class SnapshotError(RuntimeError):
    """The inputs cannot be gathered (unreadable table, every image unavailable, ...)."""


@dataclass(frozen=True)
class ReleaseSources:
    """Where a release's inputs come from (paths or ``s3://`` URIs)."""

    consensus: str
    questions: str
    instances: str
    manifest: str
    images_from: str | None = None  # None: the manifest uri; "s3": object store; else a folder
    run_ids: tuple[str, ...] = ()
    # optional, from the platform's decisions: who answered (AUDIT) and which answers did not count
    audit: str | None = None
    uncounted: str | None = None

    def tables(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in INPUT_TABLES}

    def all_run_ids(self) -> list[str]:
        """Explicit run ids plus those named by ``runs/<run_id>/`` in the sources."""
        found = set(self.run_ids)
        for src in self.tables().values():
            found.update(_RUN_ID.findall(src.replace("\\", "/")))
        return sorted(found)


@dataclass
class SourceReader:
    """Reads tables and image bytes from local paths or the object store."""

    creds: S3Credentials | None = None
    default_bucket: str = "hopchain"
    _stores: dict[str, ObjectStore] = field(default_factory=dict)

    def store(self, bucket: str) -> ObjectStore:
        if self.creds is None:
            raise SnapshotError("an s3:// source needs object-store credentials (HOPCHAIN_S3_* or --s3-credentials)")
        if bucket not in self._stores:
            self._stores[bucket] = ObjectStore(self.creds, bucket)
        return self._stores[bucket]

    def read_table(self, src: str) -> pa.Table:
        if src.startswith("s3://"):
            u = urlparse(src)
            store, key = self.store(u.netloc), u.path.lstrip("/")
            keys = [key] if key.endswith(".parquet") else sorted(
                k for k in store.list(key.rstrip("/") + "/") if k.endswith(".parquet"))
            tables = [store.get_table(k) for k in keys]
        else:
            path = Path(src)
            files = [path] if path.is_file() else sorted(path.glob("*.parquet"))
            tables = [pq.read_table(f) for f in files]
        if not tables:
            raise SnapshotError(f"no Parquet data at {src}")
        return pa.concat_tables(tables, promote_options="default")

    def read_image(self, image_id: str, uri: str, fmt: str, images_from: str | None) -> bytes:
        """The bytes of one image; ``FileNotFoundError`` when it is not there."""
        if images_from not in (None, "s3"):
            folder = Path(images_from)
            rel = urlparse(uri).path.lstrip("/") if "://" in uri else uri.lstrip("/")
            for cand in (folder / Path(rel).name, folder / rel, folder / image_file_name(image_id, fmt),
                         folder / image_id):
                if cand.is_file():
                    return cand.read_bytes()
            raise FileNotFoundError(f"{image_id} not found in {folder}")
        if uri.startswith("s3://") or images_from == "s3":
            from minio.error import S3Error

            u = urlparse(uri)
            bucket, key = (u.netloc, u.path.lstrip("/")) if uri.startswith("s3://") else (self.default_bucket, uri)
            try:
                return self.store(bucket).get_bytes(key)
            except S3Error as err:
                if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                    raise FileNotFoundError(f"s3://{bucket}/{key}: {err.code}") from None
                raise
        path = Path(urlparse(uri).path if uri.startswith("file://") else uri)
        return path.read_bytes()


def _read_contract(reader: SourceReader, name: str, src: str) -> pa.Table:
    raw = reader.read_table(src)
    try:
        table = conform(raw, name)
    except (ValueError, pa.ArrowInvalid) as err:
        raise SnapshotError(f"{name} table at {src} does not match the contract: {err}") from None
    return table


@dataclass
class PartSummary:
    """What :func:`append_part` added (``part`` is 0 when it added nothing)."""

    part: int
    decisions: int = 0
    released: int = 0
    images: int = 0
    withdrawn: int = 0
    rewritten_shards: list[str] = field(default_factory=list)
    rejects: int = 0

    @property
    def changed(self) -> bool:
        return self.part > 0


def _released(data: Path) -> dict[str, tuple[str, str]]:
    """``question_id -> (shard file, image_id)`` of every row in the current shards."""
    out: dict[str, tuple[str, str]] = {}
    for files in data_shards(data).values():
        for f in files:
            t = pq.read_table(data / f, columns=["question_id", "image_id"])
            for q, i in zip(t.column("question_id").to_pylist(), t.column("image_id").to_pylist(), strict=True):
                out[q] = (f, i)
    return out


def _decision_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row["status"], row["agreed_answer"], tuple(row["answers"] or ()))


def append_part(
    sources: ReleaseSources,
    data: Path,
    cfg: ReleaseConfig,
    reader: SourceReader,
    *,
    withdraw_images: Sequence[str] = (),
    workers: int = 8,
    progress: Callable[[str], None] | None = None,
) -> PartSummary:
    """Add the next part to ``data`` (created if missing); see the module docstring."""
    say = progress or (lambda _msg: None)
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    part = (part_numbers(data) or [0])[-1] + 1
    tables = {name: _read_contract(reader, name, src) for name, src in sources.tables().items()}
    known = {r["question_id"]: _decision_key(r)
             for r in read_meta_table(data, "consensus", latest_by=["question_id"]).to_pylist()}
    released = _released(data)

    # decisions the data folder has not recorded yet (new, or changed since)
    consensus = tables["consensus"]
    latest: dict[str, dict[str, Any]] = {}
    for row in consensus.to_pylist():
        latest[row["question_id"]] = row  # a later row of the same question is its newer decision
    new_rows = [r for q, r in latest.items() if known.get(q) != _decision_key(r)]
    withdrawn_images = set(withdraw_images)
    withdraw: dict[str, tuple[str, str]] = {}
    for r in new_rows:
        if r["question_id"] in released and r["status"] != "accepted":
            withdraw[r["question_id"]] = ("release.withdrawn_decision",
                                          f"decided {r['status']} after release ({r['reason'] or 'no reason'})")
    for q, (_f, image_id) in released.items():
        if image_id in withdrawn_images:
            withdraw[q] = ("release.withdrawn_image", "the image was withdrawn")
    to_release = {r["question_id"] for r in new_rows
                  if r["status"] == "accepted" and r["question_id"] not in released}
    simulated = sorted(q for q in to_release if latest[q]["answers_source"] in SIMULATED_SOURCES)
    if simulated and not simulated_allowed():  # the CLI's release too, not only the platform's
        raise Refused(f"release refused: {len(simulated)} accepted questions carry simulated answers (first: "
                      f"{simulated[0]}; consensus.answers_source), and this deployment forbids simulated annotators "
                      f"({SIMULATED_ENV} is not 'allow'); only people's answers are released here")
    if not new_rows and not withdraw:
        say("snapshot: nothing new since the last part")
        return PartSummary(part=0)

    questions, manifest = tables["questions"], tables["manifest"]
    wanted = {q["image_id"] for q in questions.select(["question_id", "image_id"]).to_pylist()
              if q["question_id"] in to_release} - withdrawn_images
    images = sorted((m for m in manifest.to_pylist() if m["image_id"] in wanted), key=lambda m: m["image_id"])
    say(f"snapshot: part {part}: {len(new_rows)} new decisions, {len(to_release)} questions to release over "
        f"{len(images)} images, {len(withdraw)} to withdraw")

    def fetch(m: dict[str, Any]) -> tuple[dict[str, Any], bytes | None, tuple[str, str] | None]:
        try:
            payload = reader.read_image(m["image_id"], m["uri"], m["format"], sources.images_from)
        except FileNotFoundError as err:
            return m, None, ("release.image_unavailable", f"image unavailable: {err}")
        if hashlib.sha256(payload).hexdigest() != m["image_id"]:
            return m, None, ("release.image_altered", "image bytes do not match image_id (sha256)")
        return m, payload, None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        fetched = list(pool.map(fetch, images))
    rejects = [reject(m["image_id"], *why, m["uri"]) for m, _, why in fetched if why]
    image_bytes = {m["image_id"]: payload for m, payload, _ in fetched if payload is not None}
    if images and not image_bytes:
        raise SnapshotError(f"none of the {len(images)} images could be read "
                            f"(first: {rejects[0].code}: {rejects[0].detail}); check --images-from")
    ordered = sorted(new_rows, key=lambda r: str(r["question_id"]))
    part_consensus = to_table(ordered, "consensus")
    rows, row_rejects = select_rows(
        part_consensus.filter(pc.is_in(part_consensus["question_id"], pa.array(sorted(to_release), pa.string()))),
        questions, manifest, set(image_bytes), salt=cfg.split_salt, eval_fraction=cfg.eval_fraction)
    rejects += row_rejects
    summary = PartSummary(part=part, decisions=len(new_rows), released=len(rows),
                          images=len({r.image_id for r in rows}), withdrawn=len(withdraw),
                          rejects=len(rejects))

    # the part's shards: new files only
    for split in SPLITS:
        split_rows = [r for r in rows if r.split == split]
        for i, (start, end) in enumerate(plan_shards(len(split_rows), cfg.rows_per_shard, cfg.max_shards)):
            write_parquet_atomic(shard_table(split_rows[start:end], image_bytes), data / shard_name(split, part, i))
    # withdrawals: the shards holding them are replaced (named by this part), nothing else changes
    by_shard: dict[str, set[str]] = {}
    for q in withdraw:
        by_shard.setdefault(released[q][0], set()).add(q)
    for old, gone in sorted(by_shard.items()):
        table = pq.read_table(data / old)
        keep = table.filter(pc.invert(pc.is_in(table["question_id"], pa.array(sorted(gone), pa.string()))))
        stem = old.removesuffix(".parquet").rsplit("-r", 1)[0] if "-r" in Path(old).name else old.removesuffix(
            ".parquet")
        if keep.num_rows:
            new_name = f"{stem}-r{part:05d}.parquet"
            write_parquet_atomic(keep.replace_schema_metadata(table.schema.metadata), data / new_name)
            summary.rewritten_shards.append(new_name)
        (data / old).unlink()
    if withdraw:
        old_removals = read_removals(data)
        added = pa.table({
            "question_id": sorted(withdraw), "image_id": [released[q][1] for q in sorted(withdraw)],
            "code": [withdraw[q][0] for q in sorted(withdraw)], "detail": [withdraw[q][1] for q in sorted(withdraw)],
            "part": [part] * len(withdraw)}, schema=REMOVALS)
        write_parquet_atomic(pa.concat_tables([old_removals, added]), data / REMOVALS_FILE)

    # the part's contract tables (no image bytes)
    released_images = {r.image_id for r in rows}
    decided = {r["question_id"] for r in new_rows}
    meta = data / META_DIR / part_name(part)
    meta.mkdir(parents=True, exist_ok=True)
    part_tables = {
        "consensus": part_consensus,
        "questions": questions.filter(pc.is_in(questions["question_id"], pa.array(sorted(decided), pa.string()))),
        "instances": tables["instances"].filter(
            pc.is_in(tables["instances"]["image_id"], pa.array(sorted(released_images), pa.string()))),
        "manifest": manifest.filter(pc.is_in(manifest["image_id"], pa.array(sorted(released_images), pa.string()))),
    }
    decided_ids = pa.array(sorted(decided), pa.string())
    for name in ("audit", "uncounted"):  # per decided question: who answered, what did not count
        src = getattr(sources, name)
        if src is not None:
            extra = reader.read_table(src)
            part_tables[name] = extra.filter(pc.is_in(extra["question_id"], decided_ids))
    for name, table in part_tables.items():
        write_parquet_atomic(table, meta / f"{name}.parquet")
    write_parquet_atomic(to_table(rejects, "rejects"), meta / REJECTS_FILE)
    provenance = {"sources": sources.tables() | {"images_from": sources.images_from or "manifest uri"},
                  "run_ids": sources.all_run_ids(), "part": part}
    write_atomic(meta / PROVENANCE_FILE, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    say(f"snapshot: {summary}")
    return summary


def compact_parts(data: Path, cfg: ReleaseConfig) -> PartSummary:
    """Rewrite every current shard into the shards of one new part (rows in release order, removed
    questions already absent) and delete the old shard files. Decisions (``meta``) and the removal
    list are kept. Every released byte is written again: run it on purpose, not nightly."""
    data = Path(data)
    part = (part_numbers(data) or [0])[-1] + 1
    summary = PartSummary(part=part)
    for split, files in data_shards(data).items():
        if not files:
            continue
        table = pa.concat_tables([pq.read_table(data / f) for f in files])
        order = pc.sort_indices(table, sort_keys=[("image_id", "ascending"), ("question_id", "ascending")])
        table = table.take(order)
        for i, (start, end) in enumerate(plan_shards(table.num_rows, cfg.rows_per_shard, cfg.max_shards)):
            write_parquet_atomic(table.slice(start, end - start), data / shard_name(split, part, i))
        for f in files:
            (data / f).unlink()
        summary.released += table.num_rows
    meta = data / META_DIR / part_name(part)
    meta.mkdir(parents=True, exist_ok=True)
    write_atomic(meta / PROVENANCE_FILE, json.dumps({"compacted": True, "part": part}, indent=2) + "\n")
    return summary


__all__ = ["PartSummary", "ReleaseSources", "SnapshotError", "SourceReader", "append_part", "compact_parts"]
