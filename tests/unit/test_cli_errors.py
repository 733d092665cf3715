"""Every command given a missing input prints ONE line, ``error: <what>: <why> (<what to do>)``, and exits 2;
the traceback appears only with ``-v``. Failures of services map to exit 1 the same way."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main

pytestmark = pytest.mark.unit


def _commands(tmp: Path) -> dict[str, list[str]]:
    missing = str(tmp / "nonexistent.parquet")
    out = str(tmp / "out")
    return {
        "ingest": ["ingest", "--source", str(tmp / "no-images"), "--out", out],
        "detect": ["detect", "--root", str(tmp / "no-run")],
        "segment": ["segment", "--root", str(tmp / "no-run")],
        "import-coco": ["import-coco", "--coco", str(tmp / "none.json"), "--images", str(tmp), "--out", out],
        "import-coco images": ["import-coco", "--coco", str(tmp / "none.json"), "--images", str(tmp / "nope"),
                               "--out", out],
        "export-coco": ["export-coco", "--root", str(tmp / "no-run"), "--coco", str(tmp / "c.json")],
        "questions": ["questions", "--instances", missing, "--manifest", missing, "--out", str(tmp / "q.parquet")],
        "consensus": ["consensus", "--annotations", missing, "--questions", missing, "--out", str(tmp / "c.parquet")],
        "validate": ["validate", "--suite", "questions", "--data", missing],
        "release": ["release", "--consensus", missing, "--questions", missing, "--instances", missing,
                    "--manifest", missing],
        "params": ["--params", str(tmp / "params.yaml"), "doctor"],
    }


@pytest.mark.parametrize("name", list(_commands(Path("/x"))))
def test_a_missing_input_is_one_line_and_exit_2(name: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    argv = _commands(tmp_path)[name]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    lines = [ln for ln in err.splitlines() if not ln.startswith(("INFO ", "DEBUG "))]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert str(tmp_path) in lines[0]  # names what is missing


def test_not_a_parquet_file_is_an_input_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "instances.parquet"
    bad.write_text("not parquet")
    assert main(["questions", "--instances", str(bad), "--manifest", str(bad), "--out", str(tmp_path / "q")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: input is not a readable Parquet table")


def test_verbose_adds_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["-v", "detect", "--root", str(tmp_path / "no-run")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_service_failures_exit_1_with_their_fix() -> None:
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    from pipelines.cli import FAILURE, CommandError, explain
    from pipelines.vlm.backends import ModelUnavailable

    refused = explain(ApiError(status_code=401, body={"detail": "Invalid token."}))
    assert refused is not None and refused.code == FAILURE and "token refused" in refused.line
    down = explain(httpx.ConnectError("refused", request=httpx.Request("GET", "http://127.0.0.1:9/api")))
    assert down is not None and down.code == FAILURE and "cannot reach http://127.0.0.1:9/api" in down.line
    model = explain(ModelUnavailable("vlm.qwen3vl.model 'x'", "not here", "set a path"))
    assert model is not None and model.line == "error: vlm.qwen3vl.model 'x': not here (set a path)"
    assert explain(CommandError("a", "b", "c")).line == "error: a: b (c)"  # type: ignore[union-attr]
    assert explain(ZeroDivisionError()) is None  # a bug keeps its traceback


def test_an_s3_object_that_is_not_there_is_an_input_error() -> None:
    from minio.error import S3Error

    from pipelines.cli import USAGE, explain

    err = S3Error(None, "NoSuchKey", "The specified key does not exist.", "/hopchain/runs/x", "r", "h",
                  bucket_name="hopchain", object_name="runs/x/manifest/shard-00000.parquet")
    got = explain(err)
    assert got is not None and got.code == USAGE
    assert got.line == "error: s3://hopchain/runs/x/manifest/shard-00000.parquet: NoSuchKey (check the s3:// path)"
