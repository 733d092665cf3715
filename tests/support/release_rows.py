"""A released registry folder, built offline (no servers): what a trainer has after ``dvc pull``.

:func:`build_registry` runs the release stages exactly as ``tests/unit/release/test_release_assemble.py``
does (``make_inputs`` → ``append_part`` → ``build_release`` → ``write_card``) and lays the result out like
the registry working copy::

    <root>/data/<split>/part-NNNNN-MMMMM.parquet   released rows, image bytes inline
    <root>/data/meta/...                           the part's contract tables
    <root>/README.md                               the dataset card (``configs:`` → both splits)
    <root>/card/, <root>/metrics.json              plots and metrics
    <root>/pipelines/...                           the code the release ships (``reward.py`` among it), as
                                                   ``publish`` copies it (``stage_code_deps``)

so ``datasets.load_dataset(str(root))`` gives the splits, and trainer commands run with ``cwd=root``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelines.config import REPO_ROOT, ReleaseConfig
from pipelines.release.build import build_release
from pipelines.release.card import write_card
from pipelines.release.registry import stage_code_deps
from pipelines.release.snapshot import ReleaseSources, SourceReader, append_part
from pipelines.release.synthetic import SyntheticInputs, make_inputs

#: Small shards, and an eval split that is not empty at the default size.
DEFAULT_CONFIG = ReleaseConfig(rows_per_shard=4, eval_fraction=0.3)


@dataclass(frozen=True)
class Registry:
    """A built registry folder and what went into it."""

    root: Path  # the registry working copy: data/, README.md, card/, metrics.json
    inputs: SyntheticInputs
    index: dict[str, Any]  # build_release's index: {"splits": {split: {"shards", "questions", ...}}, ...}
    metrics: dict[str, Any]  # write_card's metrics

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def card(self) -> Path:
        return self.root / "README.md"

    def rows_per_split(self) -> dict[str, int]:
        """Released questions per split, for the splits that hold any."""
        return {s: int(v["questions"]) for s, v in self.index["splits"].items() if v["questions"]}


def build_registry(
    root: Path,
    *,
    n_images: int = 10,
    questions_per_image: int = 3,
    seed: int = 3,
    accept_rate: float = 0.75,
    cfg: ReleaseConfig = DEFAULT_CONFIG,
    run_id: str = "run-a",
    with_code: bool = True,
) -> Registry:
    """Build a released registry folder at ``root`` (created; must not hold a release yet).

    The synthetic inputs and the release build folder live next to it (``<root>.work/``), so ``root``
    holds only what the registry holds. ``with_code``: also copy the code the release ships
    (``pipelines/reward.py`` and the stages' other code deps), as ``publish`` does, so trainer commands
    run in ``root`` import the release's own reward.
    """
    root = Path(root)
    work = root.parent / f"{root.name}.work"
    inputs = make_inputs(work / "src", n_images=n_images, questions_per_image=questions_per_image, seed=seed,
                         accept_rate=accept_rate)
    sources = ReleaseSources(str(inputs.consensus), str(inputs.questions), str(inputs.instances),
                             str(inputs.manifest), run_ids=(run_id,))
    data = root / "data"
    append_part(sources, data, cfg, SourceReader())
    release = work / "release"
    index = build_release(data, release, cfg)
    metrics = write_card(data, release, root / "card", root / "metrics.json", cfg, root / "README.md")
    if with_code:
        for rel in stage_code_deps():
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO_ROOT / rel, dest)
    return Registry(root=root, inputs=inputs, index=index, metrics=metrics)
