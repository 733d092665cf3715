"""The annotation journal: every annotation the platform sees, appended to the object store.

Annotations are paid for, and Label Studio's database is one volume: until a batch is decided they
would live nowhere else. Each pass that reads a batch's tasks (:mod:`pipelines.annotation.tend`, each
decision) appends the annotations it has not seen *in this form* to the journal, so a batch can be
decided from the store alone (:meth:`JournalView.tasks` rebuilds the tasks as Label Studio served
them) and every change an account made after the platform first saw an answer is on record.

Layout (one folder per batch; keys from :class:`pipelines.store.layout.BucketLayout`)::

    <journal_prefix>/<project_id>/<batch_id>/<seen_at>-<sha256>.jsonl        a segment
    <journal_prefix>/<project_id>/<batch_id>/<seen_at>-<sha256>.ckpt.jsonl   a checkpoint (see Journal)

* A **segment** holds the snapshots one pass saw new, one JSON object a line, sorted by annotation id.
  Its name is its first-seen time (``YYYYmmddTHHMMSSffffffZ``, so names sort in time order) and the
  sha256 of its bytes: append-only and content-addressed, a segment is never rewritten (writing the
  same name again could only write the same bytes).
* A **snapshot** is an annotation's fields that matter (:data:`FIELDS`) plus ``version`` (sha256 of
  them: a new version at every change, ``updated_at`` included), ``content`` (sha256 of what the answer
  is: :data:`CONTENT` — its author and its result) and ``seen_at``.
* The **first version** of an annotation is the one in the earliest segment that holds it; the
  **latest** is the last. :mod:`pipelines.annotation.integrity` compares the two.

Cost: one PUT per pass that saw something new (none when nothing changed); to read a batch, one LIST
and at most one checkpoint plus ``checkpoint_every`` segments (bench/RESULTS.md: "Annotation journal").
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelines.store.layout import BucketLayout

#: The annotation fields a snapshot keeps (Label Studio 1.23 task JSON, ``fields=all``).
FIELDS = ("id", "completed_by", "updated_by", "created_at", "updated_at", "was_cancelled", "lead_time", "result")
#: What an answer *is*: who gave it and what it says. A change here after first seen voids it.
CONTENT = ("completed_by", "was_cancelled", "result")


def _user(value: Any) -> Any:
    return value.get("id") if isinstance(value, Mapping) else value


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def snapshot(task: Mapping[str, Any], ann: Mapping[str, Any]) -> dict[str, Any]:
    """One annotation of ``task`` as the journal keeps it (without ``seen_at``)."""
    data = task.get("data") or {}
    snap: dict[str, Any] = {k: ann.get(k) for k in FIELDS}
    snap["completed_by"] = _user(snap["completed_by"])
    snap["updated_by"] = _user(snap["updated_by"])
    snap["task_id"] = task.get("id")
    snap["question_id"] = data.get("question_id")
    snap["batch"] = data.get("batch")
    snap["content"] = _digest({k: snap[k] for k in CONTENT})
    snap["version"] = _digest({k: v for k, v in snap.items() if k != "content"})
    return snap


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")


@dataclass
class JournalView:
    """Everything journaled for one batch, in first-seen order."""

    versions: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # annotation id -> versions
    segments: int = 0
    covered: set[str] = field(default_factory=set)  # segment keys read into this view
    checkpoint_covers: set[str] = field(default_factory=set)  # segments the newest known checkpoint holds
    since_checkpoint: int = 0  # segments read that the newest known checkpoint does not hold

    def known(self) -> set[str]:
        return {v["version"] for vs in self.versions.values() for v in vs}

    def add(self, snap: Mapping[str, Any]) -> None:
        vs = self.versions.setdefault(int(snap["id"]), [])
        if all(v["version"] != snap["version"] for v in vs):  # a version journaled twice (two passes at once)
            vs.append(dict(snap))

    def first(self, annotation_id: int) -> dict[str, Any]:
        return self.versions[annotation_id][0]

    def latest(self, annotation_id: int) -> dict[str, Any]:
        return self.versions[annotation_id][-1]

    def __len__(self) -> int:
        return len(self.versions)

    def tasks(self) -> list[dict[str, Any]]:
        """The batch's tasks as Label Studio served them (``fields=all`` shape), each annotation in its
        latest journaled version: what a decision reads when Label Studio's copy is gone."""
        by_task: dict[int, dict[str, Any]] = {}
        anns: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for aid in sorted(self.versions):
            snap = self.latest(aid)
            tid = int(snap["task_id"])
            by_task.setdefault(tid, {"id": tid, "data": {"question_id": snap["question_id"], "batch": snap["batch"]}})
            anns[tid].append({k: snap[k] for k in FIELDS})
        return [{**by_task[tid], "annotations": anns[tid]} for tid in sorted(by_task)]


def view_of(tasks: Iterable[Mapping[str, Any]]) -> JournalView:
    """An in-memory view of ``tasks`` as if seen once now (no journal: the authorship rules still apply)."""
    view = JournalView()
    for t in tasks:
        for ann in t.get("annotations") or []:
            if ann.get("id") is not None:
                view.add(snapshot(t, ann))
    return view


def _lines(body: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body.decode().splitlines() if line.strip()]


def _body(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return "".join(json.dumps(r, sort_keys=True, separators=(",", ":"), default=str) + "\n" for r in rows).encode()


class Journal:
    """Append-only annotation journal of one object store under ``prefix`` (see the module doc).

    Reading a batch costs one LIST plus one GET per object not yet read by this journal object. So
    that a fresh process (each Airflow task is one) does not read every segment of a long-lived
    batch, every ``checkpoint_every`` segments a **checkpoint** is added (``<seen_at>-<sha256>.ckpt.jsonl``):
    one object holding every version journaled so far, first line listing the segments it covers. A
    reader takes the newest checkpoint and the segments it does not cover. A checkpoint is only ever
    added, like a segment; it never replaces or changes one.
    """

    def __init__(self, store: Any, prefix: str, checkpoint_every: int = 32) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.checkpoint_every = checkpoint_every
        # folder -> (view, objects read into it): a pass reads only the objects added since the last
        self._cache: dict[str, tuple[JournalView, set[str]]] = {}

    def folder(self, project_id: int, batch: str) -> str:
        return BucketLayout.journal_folder(self.prefix, project_id, batch)

    def view(self, project_id: int, batch: str) -> JournalView:
        """Everything journaled for one batch (see the class doc for what is read)."""
        folder = self.folder(project_id, batch)
        view, read = self._cache.setdefault(folder, (JournalView(), set()))
        keys = sorted(k for k in self.store.list(folder) if k.endswith(".jsonl"))
        checkpoints = [k for k in keys if k.endswith(".ckpt.jsonl")]
        if checkpoints and not read:  # a fresh reader starts from the newest checkpoint
            rows = _lines(self.store.get_bytes(checkpoints[-1]))
            covered = set(rows[0].get("covers", [])) if rows else set()
            for row in rows[1:]:
                view.add(row)
            read |= covered | {checkpoints[-1]}
            view.segments += len(covered)
            view.checkpoint_covers = covered
        for key in keys:
            if key in read or key.endswith(".ckpt.jsonl"):
                continue
            read.add(key)
            view.segments += 1
            for row in _lines(self.store.get_bytes(key)):
                view.add(row)
        view.covered = {k for k in read if not k.endswith(".ckpt.jsonl")}
        view.since_checkpoint = len(view.covered - view.checkpoint_covers)
        return view

    def append(self, project_id: int, batch: str, tasks: Iterable[Mapping[str, Any]],
               view: JournalView | None = None, now: datetime | None = None) -> tuple[JournalView, int]:
        """Journal the annotations of ``tasks`` not yet journaled in this version: one new segment
        (none when nothing is new). Returns the updated view and the number of snapshots written."""
        view = view if view is not None else self.view(project_id, batch)
        known = view.known()
        seen_at = now or datetime.now(UTC)
        new: list[dict[str, Any]] = []
        for task in tasks:
            for ann in task.get("annotations") or []:
                if ann.get("id") is None:
                    continue
                snap = snapshot(task, ann)
                if snap["version"] in known:
                    continue
                known.add(snap["version"])
                new.append({**snap, "seen_at": seen_at.isoformat()})
        if not new:
            return view, 0
        new.sort(key=lambda s: (int(s["id"]), s["version"]))
        folder = self.folder(project_id, batch)
        body = _body(new)
        key = BucketLayout.journal_segment(folder, _stamp(seen_at), hashlib.sha256(body).hexdigest())
        self.store.put_bytes(key, body, "application/x-ndjson")
        for s in new:
            view.add(s)
        view.segments += 1
        view.covered.add(key)
        view.since_checkpoint += 1
        if folder in self._cache and self._cache[folder][0] is view:
            self._cache[folder][1].add(key)
        if view.since_checkpoint >= self.checkpoint_every:
            self._checkpoint(folder, view, seen_at)
        return view, len(new)

    def _checkpoint(self, folder: str, view: JournalView, at: datetime) -> str:
        history = sorted((v for vs in view.versions.values() for v in vs), key=lambda v: (v["seen_at"], int(v["id"])))
        rows: list[dict[str, Any]] = [{"covers": sorted(view.covered)}, *history]
        body = _body(rows)
        key = BucketLayout.journal_segment(folder, _stamp(at), hashlib.sha256(body).hexdigest(), checkpoint=True)
        self.store.put_bytes(key, body, "application/x-ndjson")
        view.since_checkpoint = 0
        view.checkpoint_covers = set(view.covered)
        if folder in self._cache:
            self._cache[folder][1].add(key)
        return key
