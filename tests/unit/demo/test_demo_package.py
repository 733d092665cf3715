"""The demo package stays out of the product, and its command writes the samples."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from hopchain_demo.cli import main

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[3]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", ["pipelines", "expectations", "plugins", "dags"])
def test_the_product_imports_neither_the_demo_nor_the_test_support(package: str) -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(m for m in _imported_modules(path)
                                            if m.split(".")[0] in ("hopchain_demo", "tests"))
        for path in sorted((REPO / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_samples_command_writes_images_and_coco(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples", "--out", str(tmp_path), "--count", "3"]) == 0
    coco_path = Path(capsys.readouterr().out.strip())
    coco = json.loads(coco_path.read_text())
    files = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert sorted(i["file_name"] for i in coco["images"]) == files and len(files) == 3
    assert coco["annotations"] and not list(tmp_path.glob("*.tmp"))
