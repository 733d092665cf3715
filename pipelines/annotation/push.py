"""Push questions to Label Studio as tasks: batched, idempotent by ``question_id``.

A task's data is ``{"image": <presigned URL>, "question", "question_id", "image_id", "batch"}``.
The generated answer is NOT sent: annotators must not see it. Images are referenced by presigned
GET URLs of the object store (never inlined as base64); their lifetime (at most 7 days, the
S3 signature limit) should cover the batch deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.annotation.client import LabelStudioClient

log = logging.getLogger(__name__)

MAX_PRESIGN_S = 7 * 24 * 3600


@dataclass(frozen=True)
class PushReport:
    """What one push did. ``created + already_present + duplicates_in_input == len(input)``."""

    project_id: int
    batch: str
    created: int
    already_present: int
    duplicates_in_input: int
    requests: int

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def existing_question_ids(client: LabelStudioClient, project_id: int) -> set[str]:
    """``question_id`` of every task already in the project (any batch)."""
    return {
        str(t["data"]["question_id"])
        for t in client.iter_tasks(project_id, fields="task_only", page_size=1000)
        if (t.get("data") or {}).get("question_id") is not None
    }


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
    again creates nothing. (Two pushes racing on one project could both import a question; the
    platform runs one push task per batch, and consensus keys on ``question_id`` regardless.)
    """
    present = existing_question_ids(client, project_id)
    new: list[dict[str, Any]] = []
    seen: set[str] = set()
    already = dups = 0
    urls: dict[str, str] = {}
    for q in questions:
        qid = str(q["question_id"])
        if qid in seen:
            dups += 1
            continue
        seen.add(qid)
        if qid in present:
            already += 1
            continue
        image_id = str(q["image_id"])
        if image_id not in urls:
            urls[image_id] = image_url(image_id)
        new.append(build_task(q, urls[image_id], batch))
    requests = 0
    for start in range(0, len(new), batch_size):
        chunk = new[start : start + batch_size]
        client.import_tasks(project_id, chunk)
        requests += 1
    log.info("pushed batch %s: %d new, %d already present, %d duplicate rows", batch, len(new), already, dups)
    return PushReport(project_id, batch, len(new), already, dups, requests)


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
        uri = uris[image_id]
        if "://" in uri:
            scheme, rest = uri.split("://", 1)
            bucket, _, key = rest.partition("/")
            if scheme != "s3" or bucket != store.bucket or not key:
                raise ValueError(f"image {image_id}: {uri!r} is not an object in bucket {store.bucket!r}")
        else:
            key = uri.lstrip("/")
        return str(store.presigned_get(key, expires_s=expires_s))

    return url
