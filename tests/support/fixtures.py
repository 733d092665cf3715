"""Pytest fixtures for the tiny models (import with ``from tests.support.fixtures import *``
in a ``conftest.py``). Models are built once per session under the session's base temp dir;
a second conftest importing these shares the same folders (builders skip finished folders)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import tiny_models


def _root(factory: pytest.TempPathFactory) -> Path:
    root = factory.getbasetemp() / "tiny-models"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def tiny_torch() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_qwen3vl(tmp_path_factory: pytest.TempPathFactory, tiny_torch: None) -> Path:
    return tiny_models.build_qwen3vl(_root(tmp_path_factory) / "qwen3vl")


@pytest.fixture(scope="session")
def tiny_sam3(tmp_path_factory: pytest.TempPathFactory, tiny_torch: None) -> Path:
    return tiny_models.build_sam3(_root(tmp_path_factory) / "sam3")


@pytest.fixture(scope="session")
def tiny_sam2_hf(tmp_path_factory: pytest.TempPathFactory, tiny_torch: None) -> Path:
    return tiny_models.build_sam2_hf(_root(tmp_path_factory) / "sam2_hf")


@pytest.fixture(scope="session")
def tiny_sam2_checkpoint(tmp_path_factory: pytest.TempPathFactory, tiny_torch: None) -> tiny_models.Sam2Checkpoint:
    return tiny_models.build_sam2_checkpoint(_root(tmp_path_factory) / "sam2")
