"""Push questions to Label Studio as tasks: batched, idempotent by ``question_id``, without listing the project.

Duplicates are found by asking Label Studio only for the tasks of the shard's images (a Data Manager
filter ``data.image_id`` in a list of at most :data:`LOOKUP_CHUNK` ids, ``fields=task_only``): a retried
push of the same shard finds its own tasks, and a question an earlier batch already holds (question ids
are deterministic: the image's bytes and the program) is found there. What is read depends on the
shard, never on how many tasks the project holds. Such a question keeps its first task and is decided
once, by the batch that holds it (:func:`pipelines.annotation.pull.decide_batch`).

The push also says the lowest task id its batch holds (:attr:`PushReport.first_task_id`, kept on the
batch record), the bound every reader of the batch adds to its ``data.batch`` filter. It is the lowest of
the batch's own tasks that the lookup found (an earlier try's: they are tasks of the shard's images, so the
lookup finds them all) and of the ids this try created; Label Studio gives a new task an id above every
existing one, so no task of the batch, earlier or later, falls below it.

The lookup itself stays unbounded: a question an earlier *batch* holds may sit anywhere in the project
(images recur across nights), and neither an id bound nor the ledger (which records a push only once it
finished, so says nothing of a try that died mid-import) can tell where, or that it is absent.

A task's data is ``{"image": <reference>, "question", "question_id", "image_id", "batch"}``.
The generated answer is NOT sent: annotators must not see it. Images are never inlined as base64;
the platform references them as ``s3://<bucket>/<key>`` (:func:`s3_image_refs`), which the project's
S3 source storage (:func:`pipelines.annotation.project.ensure_image_storage`, a read-only key, proxy
mode) resolves each time a task is opened: no secret and no expiry in task data, so a batch carried
over for weeks still shows its images. :func:`presigned_image_urls` (a URL signed at push time with the
given store's key) is never used by the push: it would sign with whatever key that store holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.completion import data_in_filter

log = logging.getLogger(__name__)

MAX_PRESIGN_S = 7 * 24 * 3600
# ids per lookup request: 50 sha256 image ids keep the query URL near 4 kB (proxies refuse ~8 kB)
LOOKUP_CHUNK = 50


@dataclass(frozen=True)
class PushReport:
    """What one push did. ``created + already_present + duplicates_in_input == len(input)``.

    ``held_elsewhere`` (question_id → batch) are the already-present questions whose task belongs to
    another batch; ``tasks_fetched`` and ``lookups`` are what finding them read from Label Studio.
    ``first_task_id``: the lowest task id the batch holds (see the module docstring); ``None`` when it
    holds none, or when it holds only new tasks and the server did not say their ids."""

    project_id: int
    batch: str
    created: int
    already_present: int
    duplicates_in_input: int
    requests: int
    tasks_fetched: int = 0
    lookups: int = 0
    held_elsewhere: dict[str, str] = field(default_factory=dict)
    first_task_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TaskLookup:
    """Tasks found by :func:`tasks_with`: ``question_id`` → ``(task_id, batch)``, the lowest task id seen
    per batch, and what it cost."""

    found: dict[str, tuple[int, str]] = field(default_factory=dict)
    lowest_id: dict[str, int] = field(default_factory=dict)
    tasks_fetched: int = 0
    requests: int = 0


def tasks_with(
    client: LabelStudioClient, project_id: int, key: str, values: Iterable[str], chunk: int = LOOKUP_CHUNK
) -> TaskLookup:
    """The project's tasks whose ``data.<key>`` (``image_id`` or ``question_id``) is one of ``values``,
    ``chunk`` values per request (task data only): reads what matches, never the whole project."""
    wanted = sorted(set(values))
    out = TaskLookup()
    for start in range(0, len(wanted), chunk):
        query = data_in_filter(key, wanted[start : start + chunk])
        out.requests += 1
        for task in client.iter_tasks(project_id, fields="task_only", page_size=1000, query=query):
            out.tasks_fetched += 1
            data = task.get("data") or {}
            task_id, owner = int(task["id"]), str(data.get("batch", ""))
            out.lowest_id[owner] = min(task_id, out.lowest_id.get(owner, task_id))
            if data.get("question_id") is not None:
                out.found.setdefault(str(data["question_id"]), (task_id, owner))
    return out


def build_task(question: Mapping[str, Any], image_url: str, batch: str) -> dict[str, Any]:
    return {
        "data": {
            "image": image_url,
            "question": str(question["question"]),
            "question_id": str(question["question_id"]),
            "image_id": str(question["image_id"]),
            "batch": batch,
        }
    }


def push_questions(
    client: LabelStudioClient,
    project_id: int,
    questions: Iterable[Mapping[str, Any]],
    image_url: Callable[[str], str],
    batch: str,
    batch_size: int = 500,
) -> PushReport:
    """Import the questions not yet in the project, ``batch_size`` tasks per request.

    ``questions`` are rows of the QUESTIONS contract (``question_id``, ``image_id``, ``question``
    at least); ``image_url(image_id)`` gives the URL Label Studio shows. Pushing the same rows
    again creates nothing; a question another batch holds is not pushed again (``held_elsewhere``).
    Only the tasks of the rows' images are read (see the module docstring). (Two pushes racing on
    one project could both import a question; the platform runs one push task per batch, and
    consensus keys on ``question_id`` regardless.)
    """
    rows: list[Mapping[str, Any]] = []
    seen: set[str] = set()
    dups = 0
    for q in questions:
        qid = str(q["question_id"])
        if qid in seen:
            dups += 1
            continue
        seen.add(qid)
        rows.append(q)
    lookup = tasks_with(client, project_id, "image_id", (str(q["image_id"]) for q in rows))
    new: list[dict[str, Any]] = []
    held: dict[str, str] = {}
    already = 0
    urls: dict[str, str] = {}
    for q in rows:
        qid = str(q["question_id"])
        if qid in lookup.found:
            already += 1
            owner = lookup.found[qid][1]
            if owner != batch:
                held[qid] = owner
            continue
        image_id = str(q["image_id"])
        if image_id not in urls:
            urls[image_id] = image_url(image_id)
        new.append(build_task(q, urls[image_id], batch))
    requests = 0
    lowest = lookup.lowest_id.get(batch)  # an earlier try's tasks of this batch: new ones get higher ids
    known = lowest is not None
    for start in range(0, len(new), batch_size):
        chunk = new[start : start + batch_size]
        imported = client.import_tasks(project_id, chunk)
        requests += 1
        if not known:  # the first import holds the lowest new id (unknown without ids: read unbounded)
            lowest, known = (min(imported.task_ids) if imported.task_ids else None), True
    log.info("pushed batch %s: %d new, %d already present (%d held by other batches), %d duplicate rows; "
             "%d tasks read in %d lookups", batch, len(new), already, len(held), dups, lookup.tasks_fetched,
             lookup.requests)
    return PushReport(project_id, batch, len(new), already, dups, requests, lookup.tasks_fetched, lookup.requests,
                      held, lowest)


def _object_key(store_bucket: str, image_id: str, uri: str) -> str:
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        bucket, _, key = rest.partition("/")
        if scheme != "s3" or bucket != store_bucket or not key:
            raise ValueError(f"image {image_id}: {uri!r} is not an object in bucket {store_bucket!r}")
        return key
    return uri.lstrip("/")


def s3_image_refs(bucket: str, uris: Mapping[str, str]) -> Callable[[str], str]:
    """``image_id -> s3://<bucket>/<key>``: a reference Label Studio resolves through the project's
    image storage on every open. ``uris`` as for :func:`presigned_image_urls` (another bucket or
    scheme is refused)."""

    def ref(image_id: str) -> str:
        return f"s3://{bucket}/{_object_key(bucket, image_id, uris[image_id])}"

    return ref


def presigned_image_urls(
    store: Any, uris: Mapping[str, str], expires_s: int = MAX_PRESIGN_S
) -> Callable[[str], str]:
    """``image_id -> presigned GET URL`` for images in ``store`` (an :class:`~pipelines.store.ObjectStore`).

    ``uris`` maps image_id to ``s3://<bucket>/<key>`` (the manifest's ``uri``) or to a bare key in
    the store's bucket. A URI of another bucket or scheme is refused (ValueError): Label Studio
    must never receive a local path or inlined bytes.
    """
    expires_s = min(int(expires_s), MAX_PRESIGN_S)

    def url(image_id: str) -> str:
        return str(store.presigned_get(_object_key(store.bucket, image_id, uris[image_id]), expires_s=expires_s))

    return url
