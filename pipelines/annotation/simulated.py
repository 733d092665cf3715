"""SIMULATED annotators — for the demo and the tests only, never for real data.

``simulated-annotator-<i>@hopchain.local`` accounts answer through the real Label Studio API,
exactly as people would: each asks the labeling stream for its next task (``/next``, which
honours ``maximum_annotations`` and full overlap) and submits an annotation. A simulated
annotator knows the true answer (the question's stored, generated answer) and errs with
probability ``error_rate`` (answering truth ± 1 or 2). Decisions are seeded per
(seed, annotator, question), so a run is reproducible whatever the thread interleaving.

Their passwords are derived from the admin token (HMAC), so nothing is stored and the accounts
can be reused across runs.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import random
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pipelines.annotation.annotators import AnnotatorExists, add_annotator, user_token
from pipelines.annotation.client import LabelStudioClient
from pipelines.annotation.labeling import (
    AMBIGUOUS,
    ANSWER_FIELD,
    ANSWERABLE,
    NOT_ANSWERABLE,
    VERDICT_FIELD,
)
from pipelines.contracts import canonical_number

log = logging.getLogger(__name__)

SIMULATED_DOMAIN = "hopchain.local"


def simulated_email(index: int) -> str:
    return f"simulated-annotator-{index}@{SIMULATED_DOMAIN}"


def answer_result(
    answer: Any = None, verdict: str = ANSWERABLE, extra: list[dict] | None = None
) -> list[dict]:
    """An annotation ``result`` in the project's labeling config (also used by tests)."""
    result: list[dict[str, Any]] = []
    if answer is not None:
        result.append(
            {"from_name": ANSWER_FIELD, "to_name": "image", "type": "number", "value": {"number": answer}}
        )
    result.append(
        {"from_name": VERDICT_FIELD, "to_name": "image", "type": "choices", "value": {"choices": [verdict]}}
    )
    return result + list(extra or [])


@dataclass(frozen=True)
class SimulatedAnnotator:
    email: str
    client: LabelStudioClient
    empty_retries: int = 5
    retry_wait_s: float = 1.0
    ambiguous_rate: float = 0.0  # share of questions this annotator calls ambiguous
    think_scale: float = 0.0  # sleeps lead time x this before submitting (0: answer at once)

    def decide(self, question_id: str, truth: Any, error_rate: float, seed: int) -> tuple[Any, str, float]:
        """(answer, verdict, lead time s) this annotator gives; deterministic per question."""
        rng = random.Random(f"{seed}:{self.email}:{question_id}")
        lead = round(rng.uniform(4.0, 45.0), 2)
        if self.ambiguous_rate and rng.random() < self.ambiguous_rate:
            return None, AMBIGUOUS, lead
        try:
            value = float(canonical_number(truth))
        except ValueError:
            return None, NOT_ANSWERABLE, lead
        if rng.random() < error_rate:
            value = max(0.0, value + rng.choice([-2, -1, 1, 2]))
        number: Any = int(value) if value.is_integer() else value
        return number, ANSWERABLE, lead

    def work(
        self,
        project_id: int,
        truths: Mapping[str, Any],
        error_rate: float,
        seed: int,
        max_tasks: int | None = None,
    ) -> int:
        """Answer tasks from the labeling stream until it has none left; returns how many."""
        done = 0
        idle = 0
        while max_tasks is None or done < max_tasks:
            task = self.client.next_task(project_id)
            if not task:
                # Label Studio locks a task while another annotator has it open, and /next counts those
                # locks against the overlap: an empty answer may only mean "busy right now". Ask again
                # a few times before deciding the stream is really exhausted.
                idle += 1
                if idle > self.empty_retries:
                    break
                time.sleep(self.retry_wait_s)
                continue
            idle = 0
            qid = str((task.get("data") or {}).get("question_id"))
            if qid in truths:
                answer, verdict, lead = self.decide(qid, truths[qid], error_rate, seed)
            else:  # a task this simulation has no truth for: say so rather than invent one
                answer, verdict, lead = None, NOT_ANSWERABLE, 1.0
            if self.think_scale:
                time.sleep(lead * self.think_scale)
            self.client.create_annotation(int(task["id"]), answer_result(answer, verdict), lead_time_s=lead)
            done += 1
        return done


def _password(admin_token: str, email: str) -> str:
    return "sim-" + hmac.new(admin_token.encode(), email.encode(), hashlib.sha256).hexdigest()[:24]


def simulated_annotators(admin: LabelStudioClient, admin_token: str, count: int) -> list[SimulatedAnnotator]:
    """Create (or reuse) ``count`` simulated accounts and log them in."""
    out = []
    for i in range(1, count + 1):
        email = simulated_email(i)
        password = _password(admin_token, email)
        try:
            add_annotator(admin, email, password)
        except AnnotatorExists:
            pass  # reused: its password is derived, not stored
        out.append(
            SimulatedAnnotator(email, LabelStudioClient(admin.url, user_token(admin.url, email, password)))
        )
    return out


def run_simulation(
    annotators: list[SimulatedAnnotator],
    project_id: int,
    truths: Mapping[str, Any],
    error_rate: float = 0.05,
    seed: int = 0,
    max_tasks: int | None = None,
) -> dict[str, int]:
    """All simulated annotators work in parallel (one thread each); returns tasks done per email."""
    with ThreadPoolExecutor(max_workers=max(1, len(annotators))) as pool:
        futures = {
            a.email: pool.submit(a.work, project_id, truths, error_rate, seed, max_tasks) for a in annotators
        }
        return {email: f.result() for email, f in futures.items()}
