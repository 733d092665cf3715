"""The vision-language model interface shared by detect (category identification), the VLM
question writer and the difficulty solver.

Backends (:mod:`pipelines.vlm.backends`, configured by ``params.vlm``): in-process transformers Qwen3-VL, or an
OpenAI-compatible chat endpoint (vLLM/SGLang). Both follow the stage life cycle
``setup()`` (load once per worker) / ``generate(...)`` / ``teardown()``.
"""

from __future__ import annotations

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
