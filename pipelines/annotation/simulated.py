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
import threading
import time
from collections.abc import Callable, Mapping
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
        finished: threading.Event | None = None,
        max_idle_s: float = 300.0,
    ) -> int:
        """Answer tasks from the labeling stream until it has none left; returns how many.

        With ``finished`` (the serial handout: a task reopens for the next annotator only after a
        poll), an empty stream means "wait for the handout": the annotator asks again until
        ``finished`` is set (every task complete or stopped) or it has been idle ``max_idle_s``."""
        done = 0
        idle = 0
        idle_since: float | None = None
        while max_tasks is None or done < max_tasks:
            task = self.client.next_task(project_id)
            if not task:
                # Label Studio locks a task while another annotator has it open, and /next counts those
                # locks against the overlap: an empty answer may only mean "busy right now". Ask again
                # a few times before deciding the stream is really exhausted.
                idle += 1
                idle_since = idle_since or time.monotonic()
                if finished is not None:
                    if finished.is_set() or time.monotonic() - idle_since > max_idle_s:
                        break
                elif idle > self.empty_retries:
                    break
                time.sleep(self.retry_wait_s)
                continue
            idle_since = None
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
    handout: Callable[[], bool] | None = None,
    handout_poll_s: float = 0.5,
) -> dict[str, int]:
    """All simulated annotators work in parallel (one thread each); returns tasks done per email.

    ``handout``: one reconciliation pass (what the annotation wait's trigger does every poll:
    :func:`pipelines.annotation.handout.reconcile_batches`), returning True once every task is
    complete or stopped. It runs every ``handout_poll_s`` while the annotators work, as the
    trigger would while people work; needed by the serial handout, where a task reopens only then.
    """
    finished = threading.Event() if handout is not None else None
    with ThreadPoolExecutor(max_workers=max(1, len(annotators)) + 1) as pool:
        futures = {
            a.email: pool.submit(a.work, project_id, truths, error_rate, seed, max_tasks, finished)
            for a in annotators
        }
        if handout is not None and finished is not None:
            workers = list(futures.values())
            while not all(f.done() for f in workers):
                try:
                    if handout():
                        finished.set()
                except Exception as err:  # noqa: BLE001 - a failed poll is retried, as the trigger does
                    log.warning("handout poll failed (%s); polling on", err)
                time.sleep(handout_poll_s)
        return {email: f.result() for email, f in futures.items()}
