"""The vision-language model interface shared by detect (category identification), the VLM
question writer and the difficulty solver.

Backends (:mod:`pipelines.vlm.backends`, configured by ``params.vlm``): in-process transformers Qwen3-VL, or an
OpenAI-compatible chat endpoint (vLLM/SGLang). Both follow the stage life cycle
``setup()`` (load once per worker) / ``generate(...)`` / ``teardown()``.

A served model can fail one request of many (a dropped connection, a 503 that outlived its retries).
``generate`` then raises :class:`VLMBatchError`, which carries every request's outcome in order — its
completions or a :class:`VLMFailure` —; :func:`generate_outcomes` unpacks it, so a caller turns each
failed request into a reject row and keeps the answers of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image


@dataclass(frozen=True)
class VLMRequest:
    """One chat turn: an image (RGB) and a user prompt; optional system prompt.

    ``image=None`` is a text-only turn (the blind test asks questions without their image)."""

    image: Image.Image | None
    prompt: str
    system: str | None = None


@runtime_checkable
class VLMBackend(Protocol):
    name: str  # e.g. "qwen3vl:Qwen/Qwen3-VL-8B-Instruct" — recorded in `source`/`generator`

    def setup(self) -> None: ...

    def generate(
        self,
        requests: list[VLMRequest],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        num_samples: int = 1,
    ) -> list[list[str]]:
        """For each request, ``num_samples`` completions (text). Batched where the backend can."""
        ...

    def teardown(self) -> None: ...


@dataclass(frozen=True)
class VLMFailure:
    """A request the backend could not answer after its retries; ``detail`` says why (one line)."""

    detail: str


#: per request: its ``num_samples`` completions, or why it failed
Outcome = list[str] | VLMFailure


class VLMRequestError(RuntimeError):
    """A request that failed after all retries (endpoint down, timeouts, 4xx)."""


class VLMBatchError(VLMRequestError):
    """Some requests of one ``generate`` call failed after their retries. ``outcomes`` holds, for every
    request in request order, its completions or its :class:`VLMFailure`."""

    def __init__(self, backend: str, outcomes: Sequence[Outcome]):
        self.outcomes = list(outcomes)
        failed = [o for o in self.outcomes if isinstance(o, VLMFailure)]
        first = failed[0].detail if failed else ""
        super().__init__(f"{backend}: {len(failed)} of {len(self.outcomes)} requests failed; first: {first}")


def generate_outcomes(
    backend: VLMBackend,
    requests: list[VLMRequest],
    *,
    max_new_tokens: int = 512,
    temperature: float = 0.0,
    num_samples: int = 1,
) -> list[Outcome]:
    """``backend.generate`` with each failed request as a :class:`VLMFailure` in its place (the others'
    answers kept). Other errors (a model that cannot run at all) propagate."""
    try:
        return list(backend.generate(requests, max_new_tokens=max_new_tokens, temperature=temperature,
                                     num_samples=num_samples))
    except VLMBatchError as err:
        return err.outcomes


def requests_per_call(backend: VLMBackend, default: int) -> int:
    """How many requests a caller should hand ``backend.generate`` at once: the backend's own
    ``requests_per_call`` (the in-process batch; for a served model several times its concurrency, so
    its pool stays full), else ``default``."""
    return max(1, int(getattr(backend, "requests_per_call", default) or default))
