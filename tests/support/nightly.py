"""The nightly DAG's stage tasks in one process, for tests that drive a run as the tasks do: each call is what
one task's ``run_stage`` does (:class:`pipelines.runner.Runner` over one shard, checks included)."""

from __future__ import annotations

from pipelines.detect.stage import DetectStage
from pipelines.ingest.stage import IngestStage
from pipelines.questions.stage import QuestionsStage
from pipelines.runner import RunEnv, Runner, StageRun
from pipelines.segment.stage import SegmentStage
from pipelines.validate.stage import ValidateStage

STAGES = {"detect": DetectStage, "segment": SegmentStage, "questions": QuestionsStage, "validate": ValidateStage}


def ingest(env: RunEnv, input_prefix: str, *, shard_size: int = 0, max_images: int = 0) -> list[int]:
    """The ``ingest`` task: the shard numbers that hold images."""
    stage = IngestStage(input_prefix=input_prefix, shard_size=shard_size, max_images=max_images)
    return Runner(env).run(stage).shards


def run(env: RunEnv, stage: str, shard: int) -> StageRun:
    """The ``shard.<stage>`` task of one shard."""
    return Runner(env).run(STAGES[stage](), [shard])


def build(env: RunEnv, shard: int, *, validate: bool = False) -> None:
    """detect → segment → questions (→ validate) of one shard."""
    for name in ("detect", "segment", "questions", *(["validate"] if validate else [])):
        run(env, name, shard)
