"""Idempotent bootstrap of the verification project (one project per pipeline)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.guard import check_project, expected_state, hold_reason, repair_project
from pipelines.annotation.labeling import project_settings

log = logging.getLogger(__name__)


def ensure_project(
    client: LabelStudioClient, title: str, annotators_required: int = 4, handout: str = "serial",
    repair: bool = False,
) -> dict[str, Any]:
    """Return the project titled ``title``, creating it with the platform's settings if there is none.

    Calling it again changes nothing (no second project). An existing project that differs from what
    the platform sets (:mod:`pipelines.annotation.guard`: labeling config, instructions, settings,
    webhooks) is, with ``repair=False``, left as it is and logged as a warning naming the differences:
    the next tend pass and decision hold its batches until an operator looks and repairs it
    (``hopchain project repair``). With ``repair=True`` it is put back (webhooks the platform did not
    set are deleted) and what changed is logged. Changing ``handout`` or ``annotators_required`` in
    the configuration is such a difference too, applied by the repair; Label Studio then resets the
    overlap of tasks in progress, and the next reconciliation (:mod:`pipelines.annotation.handout`)
    puts each one back where the new handout wants it.
    """
    project = client.find_project(title)
    if project is None:
        project = client.create_project(project_settings(title, annotators_required, handout))
        log.info("created Label Studio project %s (id %s)", title, project["id"])
        return project
    pid = int(project["id"])
    expected = expected_state(title, annotators_required, handout)
    if repair:
        changed = repair_project(client, pid, expected)
        if changed:
            log.info("repaired: %s", hold_reason(changed, pid))
            project = client.get_project(pid)
        return project
    drifts = check_project(client, pid, expected)
    if drifts:
        log.warning("%s (its batches are held until `hopchain project repair`)", hold_reason(drifts, pid))
    return project


IMAGE_STORAGE_TITLE = "hopchain-images"


@dataclass(frozen=True)
class ImageStorage:
    """The object store Label Studio reads image references from (an S3 *source storage* of the
    project, never synced: it only resolves ``s3://<bucket>/<key>`` in task data).

    ``access_key`` / ``secret_key`` are a read-only key of ``bucket`` (the push proves it:
    :mod:`pipelines.annotation.image_key`); they are stored in Label Studio's database, never in task
    data. ``endpoint`` is where Label Studio reaches the store; None names none, so Label Studio uses its
    own ``S3_ENDPOINT`` setting: the one endpoint its SSRF guard trusts while every private address stays
    banned for the endpoints its users type in (storages, webhooks).

    ``presign=False`` (the default) is Label Studio's storage proxy: an annotator's browser asks Label
    Studio (``/tasks/<id>/resolve/?fileuri=...``, with its Label Studio login) and Label Studio streams the
    bytes: the browser never sees a signed URL, a key id or the object store's address, so the store
    need not be reachable from annotators' networks. ``presign=True`` redirects the browser to a URL
    signed with the key, valid ``presign_ttl_min`` minutes from each open (the store must then be
    reachable by the browsers at ``endpoint``)."""

    bucket: str
    endpoint: str | None
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    presign_ttl_min: int = 60
    presign: bool = False

    def __repr__(self) -> str:
        return (f"ImageStorage(bucket={self.bucket!r}, endpoint={self.endpoint!r}, presign={self.presign}, "
                "secret_key='***')")

    def settings(self) -> dict[str, Any]:
        return {
            "title": IMAGE_STORAGE_TITLE,
            "bucket": self.bucket,
            "prefix": "",
            "s3endpoint": self.endpoint or "",  # "": Label Studio's own S3_ENDPOINT
            "region_name": self.region,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "presign": self.presign,
            "presign_ttl": int(self.presign_ttl_min),
            "use_blob_urls": True,
            "recursive_scan": False,
            "description": "Resolves the s3:// image references of HopChain tasks; never synced.",
        }


def ensure_image_storage(client: LabelStudioClient, project_id: int, storage: ImageStorage) -> dict[str, Any]:
    """Give the project the S3 source storage that resolves its tasks' ``s3://`` images; idempotent.

    A storage titled :data:`IMAGE_STORAGE_TITLE` is created once and repaired when its bucket,
    endpoint, key or TTL drifted (the secret is re-sent only then: the server never returns it).
    It is never synced, so it imports nothing: tasks come only from the push.
    """
    wanted = storage.settings()
    found = [s for s in client.s3_import_storages(project_id) if s.get("title") == IMAGE_STORAGE_TITLE]
    if not found:
        created = client.create_s3_import_storage(project_id, wanted)
        log.info("project %s: image storage for s3://%s created (id %s)", project_id, storage.bucket, created.get("id"))
        return created
    current = min(found, key=lambda s: int(s["id"]))
    checked = ("bucket", "s3endpoint", "region_name", "aws_access_key_id", "presign", "presign_ttl", "use_blob_urls")
    if any((current.get(k) or None) != (wanted[k] or None) for k in checked):  # "" and None: no endpoint
        log.info("project %s: repairing image storage %s", project_id, current["id"])
        return client.update_s3_import_storage(int(current["id"]), wanted)
    return current
