"""Versioned dataset releases: packed shards, COCO, chat JSONL, dataset card, DVC registry tags.

Layout (see docs/releases.md):

* :mod:`pipelines.release.assemble` — pure functions from the inputs snapshot to release rows,
  shards, COCO and chat records (no I/O beyond the paths it is given).
* :mod:`pipelines.release.build` / :mod:`pipelines.release.card` — the two ``dvc.yaml`` stages
  (``python -m pipelines.release.build|card``), file in → file out.
* :mod:`pipelines.release.snapshot` — gathers the inputs (tables + image bytes) into the
  DVC-tracked ``inputs/`` folder of the registry working copy.
* :mod:`pipelines.release.dvc` / :mod:`pipelines.release.registry` — git + DVC: repro, push
  (fail fast, resume), verify, commit, tag.
"""
