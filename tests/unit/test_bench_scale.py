"""bench/scale.py's figures: one column per size on one stack, the ratio of the last size to the first, and a
last size that shrinks to what ends before the deadline (a result that ends in time beats one cut off)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import scale  # bench/ is a folder of scripts

pytestmark = pytest.mark.unit


def night(images: int, per_image_s: float, push_tasks: int) -> dict[str, Any]:
    """A night whose every stage costs ``per_image_s`` seconds per image."""
    tis = []
    for dag_id, task in scale.STAGE_ORDER:
        tis.append({"task_id": task, "dag": dag_id, "duration": per_image_s * images, "map_index": 0,
                    "start": "2026-12-04T12:00:00+00:00", "id": f"{task}-{images}"})
    by_dag = {key: {"tis": [t for t in tis if t["dag"] == dag_id], "wall_s": 10.0 * images / 1000}
              for dag_id, key in scale.DAG_KEY.items()}
    return {"label": f"{images:,} images", "images": images, "wall_s": 0.1 * images, **by_dag,
            "summary": {"questions": images * 4}, "release_record": {"tag": f"v{images}", "questions": images},
            "batches": [{"shard": 0, "created_tasks": push_tasks, "project_id": 1, "tasks_fetched": 0}],
            "decisions": [{"tasks_fetched": 10, "accepted": 8, "rejected": 2}] * 5, "replay": {},
            "components_mb": {"labelstudio": 400.0 + images / 100, "scheduler": 300.0}}


def result(nights: list[dict[str, Any]]) -> dict[str, Any]:
    return {"machine": {"cpu": "cpu", "cores": 2, "ram_gb": 8, "load_at_start": "0.1"}, "commit": "abc",
            "dirty": [], "shard_size": 500, "nights": nights, "stacks": [{"startup_s": 60, "wall_s": 600}],
            "total_s": 600}


def test_one_column_per_size_and_the_ratio_of_the_last_to_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "overhead", lambda n: {k: 0.0 for k in (
        "shards", "shard_task_seconds", "shard_step_seconds", "launch_median_s", "launch_mean_s",
        "in_task_mean_s", "per_shard_s")})
    lines = scale.report(result([night(1000, 0.1, 3700), night(5000, 0.1, 18500), night(20000, 0.13, 74000)]))
    header = next(ln for ln in lines if ln.startswith("| stage"))
    assert "@1,000 | @5,000 | @20,000" in header
    cost = next(ln for ln in lines if "per-image cost" in ln)
    assert "**1.30** OVER" in cost  # 0.13 / 0.1 per image on every stage but wait and simulate
    held = next(ln for ln in lines if "before the night's push" in ln)
    assert "| 0 | 3,700 | 22,200 |" in held  # the project grows across the sizes
    assert any(ln.startswith("| peak RSS, labelstudio") and "600" in ln for ln in lines)


def test_the_last_size_shrinks_to_whole_thousands_that_end_before_the_deadline() -> None:
    prev = {"images": 5000, "wall_s": 500.0}  # 0.1 s per image
    entries = [{"file_name": str(i)} for i in range(20000)]
    deadline = (datetime.now(UTC) + timedelta(minutes=32)).strftime("%H:%M")
    out: dict[str, Any] = {}
    label, prefix, kept = scale.fit_deadline(prev, ("20,000 images", "scale-20000", entries),
                                             argparse.Namespace(deadline=deadline), out)
    # ~30 min left after the 2-minute margin: 1800 s / 0.11 s -> 16,000 (whole thousands, at most)
    assert len(kept) % 1000 == 0 and 14000 <= len(kept) <= 16000
    assert (label, prefix) == (f"{len(kept):,} images", f"scale-{len(kept)}")
    assert "ran" in out["fallback"]
    far = (datetime.now(UTC) + timedelta(hours=3)).strftime("%H:%M")
    assert scale.fit_deadline(prev, ("20,000 images", "scale-20000", entries), argparse.Namespace(deadline=far),
                              {})[2] is entries
