"""The validate stage: a shard's questions checked against its manifest and instances before the push.

It writes no table: the runner runs its check (the ``questions`` suite), saves the result and Data Docs,
then fails the task on a critical failure (:class:`expectations.runner.ValidationFailed`).
"""

from __future__ import annotations

from pipelines.runner import Check, Shard, ShardResult, StageBase


class ValidateStage(StageBase):
    name = "validate"
    inputs = ("manifest", "instances", "questions")
    checks = (Check("questions", "questions", ("manifest", "instances")),)

    def process(self, shard: Shard) -> ShardResult:
        return ShardResult()
