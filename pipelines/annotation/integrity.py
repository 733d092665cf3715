"""Which annotations count: each counted answer is its author's, as the platform first saw it.

Label Studio Community Edition lets every account of the organisation read and change every
annotation (and create one in another account's name: ``completed_by`` is writable). The platform
cannot prevent that, so it refuses to count what it cannot attribute. An annotation counts only when

* its author (``completed_by``) is an active **registered annotator**
  (:mod:`pipelines.annotation.registry`) and not one of the platform's own accounts;
* every version the platform saw was last changed by its author (``updated_by == completed_by``:
  Label Studio sets ``updated_by`` to the account of every request that saves an annotation,
  creation included, so an answer created in another's name or changed by another shows it);
* its content (author, result, cancelled flag) is what the platform first saw
  (:mod:`pipelines.annotation.journal`): an answer changed after it was first seen, even by its
  author, is no longer the answer that was handed in.

Anything else is a :class:`Finding` with a reason code (``integrity.*``): the annotation is not counted,
the task goes back to the labeling stream for a fresh answer from another annotator
(:func:`pipelines.annotation.handout.plan`'s ``uncounted``), and the finding is a reject row of the
decision, counted on the Status tab and the release card.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pipelines.annotation.journal import JournalView
from pipelines.annotation.registry import AnnotatorRegistry, Kind
from pipelines.annotation.validate import annotation_reject
from pipelines.contracts.rejects import Reject

UNREGISTERED = "integrity.unregistered_annotator"
PLATFORM_ACCOUNT = "integrity.platform_account"
CHANGED_BY_OTHER = "integrity.changed_by_other"
CHANGED_AFTER_SEEN = "integrity.changed_after_seen"
CODES = (UNREGISTERED, PLATFORM_ACCOUNT, CHANGED_BY_OTHER, CHANGED_AFTER_SEEN)


@dataclass(frozen=True)
class Finding:
    """One annotation that does not count, and why."""

    annotation_id: int
    task_id: int | None
    question_id: str | None
    code: str
    detail: str
    completed_by: int | None
    updated_by: int | None

    def reject(self) -> Reject:
        return annotation_reject(f"{self.question_id}/annotation-{self.annotation_id}", self.code, self.detail,
                                 json.dumps(asdict(self), sort_keys=True))


def _int(v: Any) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def check(view: JournalView, registry: AnnotatorRegistry | None, platform: Iterable[int] = ()) -> dict[int, Finding]:
    """Annotation id → :class:`Finding`, for every journaled annotation that does not count.

    ``registry`` None skips the registration rule (tools and tests that have no deployment); the
    authorship and first-seen rules always hold.
    """
    platform = {int(p) for p in platform}
    out: dict[int, Finding] = {}
    for aid, versions in view.versions.items():
        first, latest = versions[0], versions[-1]
        author = _int(first.get("completed_by"))

        def finding(code: str, detail: str, aid: int = aid, latest: dict[str, Any] = latest) -> Finding:
            return Finding(aid, _int(latest.get("task_id")), latest.get("question_id"), code, detail,
                           _int(latest.get("completed_by")), _int(latest.get("updated_by")))

        changers = [(_int(v.get("completed_by")), _int(v.get("updated_by"))) for v in versions]
        other = next(((c, u) for c, u in changers if u != c), None)
        if author is not None and author in platform:
            out[aid] = finding(PLATFORM_ACCOUNT, f"annotation by the platform's own account (user {author})")
        elif other is not None:
            out[aid] = finding(CHANGED_BY_OTHER, f"annotation of user {other[0]} last changed by "
                                                 f"{'an unknown account' if other[1] is None else f'user {other[1]}'}")
        elif any(v["content"] != first["content"] for v in versions[1:]):
            out[aid] = finding(CHANGED_AFTER_SEEN, f"annotation changed after the platform first saw it "
                                                   f"(first seen {first.get('seen_at')}, "
                                                   f"{len(versions) - 1} later version(s))")
        elif registry is not None and registry.kind_of(author, platform) is None:
            out[aid] = finding(UNREGISTERED, f"user {author} is not a registered annotator")
    return out


def kinds(registry: AnnotatorRegistry | None, user_ids: Iterable[int | None]) -> dict[int, Kind]:
    """User id → ``person`` / ``simulated`` for the registered ones (None registry: everyone a person)."""
    out: dict[int, Kind] = {}
    for u in user_ids:
        if u is None:
            continue
        k = registry.kind_of(u) if registry is not None else "person"
        if k is not None:
            out[int(u)] = k
    return out
