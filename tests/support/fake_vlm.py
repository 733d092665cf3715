"""Fake VLM backends for the questions tests: canned completions, and a solver right on a fixed share."""

from __future__ import annotations

from collections.abc import Sequence

from pipelines.vlm import VLMRequest


class FakeVLM:
    """A VLMBackend returning canned completions; records the requests it got."""

    name = "fake:canned"

    def __init__(self, outputs: Sequence[str], fail_on_call: int | None = None) -> None:
        self.outputs = list(outputs)
        self.fail_on_call = fail_on_call
        self.calls: list[list[VLMRequest]] = []

    def setup(self) -> None: ...

    def teardown(self) -> None: ...

    def generate(
        self,
        requests: list[VLMRequest],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        num_samples: int = 1,
    ) -> list[list[str]]:
        self.calls.append(requests)
        if self.fail_on_call is not None and len(self.calls) == self.fail_on_call:
            raise TimeoutError("endpoint timed out")
        return [list(self.outputs[:num_samples]) for _ in requests]


class Solver:
    """A solver that is right on a fixed fraction of its samples (deterministically); the test sets
    ``answers`` (question text → right answer) before calling it."""

    name = "fake:solver"

    def __init__(self, right: int, outputs_wrong: str = "I think the answer is 99.") -> None:
        self.right, self.wrong = right, outputs_wrong
        self.temperatures: list[float] = []
        self.answers: dict[str, str] = {}

    def setup(self) -> None: ...

    def teardown(self) -> None: ...

    def generate(
        self,
        requests: list[VLMRequest],
        *,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        num_samples: int = 1,
    ) -> list[list[str]]:
        self.temperatures.append(temperature)
        out = []
        for r in requests:
            answer = self.answers[r.prompt.split("Question: ", 1)[1].strip()]
            out.append(
                [f"Counting carefully...\nAnswer: {answer}"] * self.right
                + [self.wrong] * (num_samples - self.right)
            )
        return out
