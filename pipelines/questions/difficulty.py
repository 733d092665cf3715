"""Difficulty calibration: a solver model answers each question ``k`` times; the pass rate is stored
in ``pass_rate`` and questions at or above ``drop_at_pass_rate`` (too easy) are dropped, each
with a REJECTS row. A completion counts as correct when the number it gives equals the stored answer, by the reward
rule trainers use (:mod:`pipelines.reward`); a completion without a number counts as wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from PIL import Image

from pipelines.contracts.rejects import Reject
from pipelines.questions.generator import Question
from pipelines.questions.prompts import load_prompt
from pipelines.questions.scene import question_reject
from pipelines.reward import extract_answer
from pipelines.vlm import VLMBackend, VLMFailure, VLMRequest, generate_outcomes, requests_per_call

TOO_EASY = "difficulty.too_easy"
SOLVER_ERROR = "difficulty.solver_error"
BLIND_SOLVABLE = "leakage.blind_solvable"


def solver_answer(text: str) -> str | None:
    """The canonical number a solver completion gives, or ``None``: the trainers' reward rule
    (:func:`pipelines.reward.extract_answer`), so pass rates and rewards agree."""
    return extract_answer(text)


def _solve(
    questions: Sequence[Question],
    solver: VLMBackend,
    template: Any,
    image_of: Callable[[str], Image.Image] | None,
    *,
    k: int,
    temperature: float,
    batch_size: int | None,
    max_new_tokens: int,
    what: str,
) -> Iterator[tuple[Question, list[str] | None, str]]:
    """(question, its ``k`` completions — or ``None`` when the solver failed —, failure reason) per
    question, in batches (``None``: as many as the solver takes at once); ``image_of=None`` asks without the
    image."""
    batch_size = batch_size or requests_per_call(solver, 8)
    for start in range(0, len(questions), batch_size):
        batch = list(questions[start : start + batch_size])
        try:
            reqs = [
                VLMRequest(image_of(q.image_id) if image_of else None, template.substitute(question=q.question))
                for q in batch
            ]
            outs = generate_outcomes(solver, reqs, max_new_tokens=max_new_tokens, temperature=temperature,
                                     num_samples=k)
            if len(outs) != len(batch):
                raise RuntimeError(f"solver returned {len(outs)} results for {len(batch)} requests")
        except Exception as err:  # noqa: BLE001 - recorded per question, questions kept
            for q in batch:
                yield q, None, f"{what}{type(err).__name__}: {err}"
            continue
        for q, texts in zip(batch, outs, strict=True):
            if isinstance(texts, VLMFailure):  # this question's request failed after its retries
                yield q, None, f"{what}{texts.detail}"
            else:
                yield q, texts, ""


def _judge(
    results: Iterator[tuple[Question, list[str] | None, str]],
    threshold: float,
    code: str,
    detail: Callable[[int, int], str],
    keep: Callable[[Question, float], Question],
) -> tuple[list[Question], list[Reject]]:
    """Drop each question whose share of right completions is ``>= threshold`` (a reject with
    ``code``, ``detail(right, k)`` and the completions); keep the others as ``keep(question, share)``;
    keep a question the solver failed on, with its ``difficulty.solver_error`` reject."""
    kept: list[Question] = []
    rejects: list[Reject] = []
    for q, texts, failure in results:
        if texts is None:
            rejects.append(question_reject(q.question_id, SOLVER_ERROR, failure))
            kept.append(q)
            continue
        correct = sum(solver_answer(t) == q.answer for t in texts)
        share = correct / max(len(texts), 1)
        if share >= threshold:
            rejects.append(question_reject(q.question_id, code, detail(correct, len(texts)), "\n---\n".join(texts)))
        else:
            kept.append(keep(q, share))
    return kept, rejects


def calibrate(
    questions: Sequence[Question],
    image_of: Callable[[str], Image.Image],
    solver: VLMBackend,
    *,
    k: int = 8,
    temperature: float = 1.0,
    drop_at_pass_rate: float = 0.75,
    prompt_version: str = "v1",
    batch_size: int | None = None,
    max_new_tokens: int = 256,
) -> tuple[list[Question], list[Reject]]:
    """(kept questions with ``pass_rate`` set, rejects for the too-easy and the unscorable).

    ``image_of(image_id)`` returns the plain RGB image (no marks: the solver sees what a human sees).
    A solver failure on a batch keeps those questions with ``pass_rate`` null and records a reject
    per question with code ``difficulty.solver_error`` (the questions are not silently dropped).
    """
    results = _solve(questions, solver, load_prompt(prompt_version, "solver"), image_of, k=k,
                     temperature=temperature, batch_size=batch_size, max_new_tokens=max_new_tokens, what="")
    return _judge(
        results,
        drop_at_pass_rate,
        TOO_EASY,
        lambda right, n: f"pass rate {right}/{n} >= {drop_at_pass_rate:g}",
        lambda q, rate: replace(q, pass_rate=rate),
    )


def blind_test(
    questions: Sequence[Question],
    solver: VLMBackend,
    *,
    k: int = 4,
    temperature: float = 1.0,
    drop_at_accuracy: float = 0.5,
    prompt_version: str = "v1",
    batch_size: int | None = None,
    max_new_tokens: int = 256,
) -> tuple[list[Question], list[Reject]]:
    """The blind test (as MMStar and Video-HopChain do): the solver answers each question *without
    the image*, ``k`` times; questions it answers right at least ``drop_at_accuracy`` of the time
    are answerable from the words alone and dropped (``leakage.blind_solvable``). Solver failures
    keep the questions, each with a ``difficulty.solver_error`` reject."""
    results = _solve(questions, solver, load_prompt(prompt_version, "blind"), None, k=k,
                     temperature=temperature, batch_size=batch_size, max_new_tokens=max_new_tokens,
                     what="blind test: ")
    return _judge(
        results,
        drop_at_accuracy,
        BLIND_SOLVABLE,
        lambda right, n: f"{right}/{n} right without the image",
        lambda q, _share: q,
    )
