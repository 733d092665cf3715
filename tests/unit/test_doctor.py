"""``hopchain doctor``: each check answers within 10 s with one line, and a failure names its fix.

Offline: models are local folders, a fake Hugging Face cache, or ids that are nowhere; the endpoint is
the in-process fake OpenAI server; the S3 endpoint is a closed loopback port. The real-service cases
(the demo stack passing every check, a refused Label Studio token) are in
``tests/integration/test_doctor_stack.py``.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from pipelines.config import ModelRef, load_params, params_from_dict
from pipelines.ops.doctor import (
    CheckResult,
    cuda_check,
    model_check,
    openai_check,
    profile_checks,
    run_check,
    run_checks,
    s3_check,
)
from tests.support.fake_openai import FakeChatServer

pytestmark = pytest.mark.unit
LIMIT_S = 10.0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _checked(check) -> CheckResult:
    t0 = time.monotonic()
    result = run_check(check)
    assert time.monotonic() - t0 < LIMIT_S, f"{check.name} took longer than {LIMIT_S} s"
    line = result.line()
    assert "\n" not in line
    return result


def _local_model(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dtype": "bfloat16"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 2048)
    return folder


def test_a_missing_model_path_fails_naming_the_key_and_how_to_fix_it(tmp_path: Path) -> None:
    res = _checked(model_check("vlm.qwen3vl", ModelRef(model=str(tmp_path / "no-such-checkpoint"))))
    assert not res.ok
    assert "no such checkpoint folder" in res.detail and "vlm.qwen3vl.model" in res.detail
    assert "params.yaml" in res.fix
    assert res.line().startswith("FAILED  model vlm.qwen3vl:")


def test_a_local_model_folder_resolves_as_a_path(tmp_path: Path) -> None:
    folder = _local_model(tmp_path / "qwen")
    res = _checked(model_check("vlm.qwen3vl", ModelRef(model=str(folder))))
    assert res.ok and res.detail == f"local path {folder.resolve()}"


def test_a_sam2_checkpoint_must_be_a_file(tmp_path: Path) -> None:
    res = _checked(model_check("segment.sam2", ModelRef(model=str(tmp_path)), single_file=True))
    assert not res.ok and "not a checkpoint file" in res.detail


def test_a_hub_id_resolves_from_the_local_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HOPCHAIN_ALLOW_DOWNLOADS", raising=False)
    missing = _checked(model_check("segment.sam3", ModelRef(model="hopchain-test/sam3-not-cached")))
    assert not missing.ok and "not in the local Hugging Face cache" in missing.detail
    assert all(w in missing.fix for w in ("segment.sam3.model", "HF_HOME", "HOPCHAIN_ALLOW_DOWNLOADS=1"))

    snap = tmp_path / "hub" / "models--hopchain-test--sam3-cached" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text("{}")
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    cached = _checked(model_check("segment.sam3", ModelRef(model="hopchain-test/sam3-cached")))
    assert cached.ok and "in the local Hugging Face cache" in cached.detail

    monkeypatch.setenv("HOPCHAIN_ALLOW_DOWNLOADS", "1")
    allowed = _checked(model_check("segment.sam3", ModelRef(model="hopchain-test/sam3-not-cached")))
    assert allowed.ok and "will be downloaded" in allowed.detail


def test_loading_a_model_that_is_not_here_is_one_error_not_a_download(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    from pipelines.vlm.backends import ModelUnavailable, Qwen3VLBackend

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HOPCHAIN_ALLOW_DOWNLOADS", raising=False)
    t0 = time.monotonic()
    with pytest.raises(ModelUnavailable, match="vlm.qwen3vl.model 'Qwen/Qwen3-VL-8B-Instruct': not in the local"):
        Qwen3VLBackend(ModelRef(model="Qwen/Qwen3-VL-8B-Instruct", device="cpu")).setup()
    assert time.monotonic() - t0 < LIMIT_S


def test_loading_passes_local_files_only_unless_downloads_are_switched_on(monkeypatch) -> None:
    from pipelines.vlm.backends import pretrained_kwargs

    monkeypatch.delenv("HOPCHAIN_ALLOW_DOWNLOADS", raising=False)
    assert pretrained_kwargs() == {"local_files_only": True}
    monkeypatch.setenv("HOPCHAIN_ALLOW_DOWNLOADS", "1")
    assert pretrained_kwargs() == {}


def test_cuda_requested_on_a_machine_without_one_fails(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    folder = _local_model(tmp_path / "m")
    res = _checked(cuda_check("segment.sam3", ModelRef(model=str(folder), device="cuda")))
    assert not res.ok and "sees no CUDA GPU" in res.detail
    assert "segment.sam3.device: cpu" in res.fix


class _FakeCuda:
    def __init__(self, free_gib: float) -> None:
        self.free = int(free_gib * 2**30)

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def mem_get_info(self, index: int) -> tuple[int, int]:
        return self.free, 141 * 2**30

    def get_device_name(self, index: int) -> str:
        return "Fake H200"


def test_gpu_memory_is_estimated_from_the_id_and_the_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    ref = ModelRef(model="Qwen/Qwen3-VL-8B-Instruct", device="cuda", dtype="bfloat16")
    monkeypatch.setattr(torch, "cuda", _FakeCuda(free_gib=10))
    small = _checked(cuda_check("vlm.qwen3vl", ref))
    assert not small.ok and "8B parameters" in small.detail and "17.9 GiB" in small.detail
    assert "dtype" in small.fix
    monkeypatch.setattr(torch, "cuda", _FakeCuda(free_gib=100))
    big = _checked(cuda_check("vlm.qwen3vl", ref))
    assert big.ok and "100.0 of 141.0 GiB free" in big.detail
    # float32 needs twice as much
    f32 = _checked(cuda_check("vlm.qwen3vl", ref.model_copy(update={"dtype": "float32"})))
    assert f32.ok and "35.8 GiB" in f32.detail


def _openai_params(base_url: str, model: str):
    return params_from_dict({"vlm": {"backend": "openai", "openai": {"base_url": base_url, "model": model}}})


def test_an_endpoint_serving_a_different_model_fails_naming_what_it_serves() -> None:
    with FakeChatServer(lambda body, n: "", models=("Qwen/Qwen3-VL-32B-Instruct",)) as server:
        wrong = _checked(openai_check(_openai_params(server.base_url, "Qwen/Qwen3-VL-8B-Instruct")))
        right = _checked(openai_check(_openai_params(server.base_url, "Qwen/Qwen3-VL-32B-Instruct")))
    assert not wrong.ok
    assert "serves Qwen/Qwen3-VL-32B-Instruct, not 'Qwen/Qwen3-VL-8B-Instruct'" in wrong.detail
    assert "vlm.openai.model" in wrong.fix
    assert right.ok


def test_a_dead_endpoint_fails_fast() -> None:
    res = _checked(openai_check(_openai_params(f"http://127.0.0.1:{_closed_port()}/v1", "m")))
    assert not res.ok and "no answer at" in res.detail and "vlm.openai.base_url" in res.fix


def test_a_dead_s3_endpoint_fails_fast() -> None:
    from pipelines.store import S3Credentials

    creds = S3Credentials(f"http://127.0.0.1:{_closed_port()}", "key", "secret")
    res = _checked(s3_check(load_params(profile="demo"), creds))
    assert not res.ok and "no answer at http://127.0.0.1:" in res.detail
    assert "HOPCHAIN_S3_ENDPOINT" in res.fix


def test_a_check_that_hangs_is_cut_at_its_timeout() -> None:
    from pipelines.ops.doctor import Check

    t0 = time.monotonic()
    res = run_check(Check("slow service", lambda: time.sleep(30) or "never", timeout_s=0.5))
    assert time.monotonic() - t0 < 2
    assert not res.ok and "no answer within" in res.detail


def test_the_gpu_profile_checks_every_model_and_device() -> None:
    names = [c.name for c in profile_checks(load_params(profile="gpu"))]
    assert names == ["model vlm.qwen3vl", "cuda vlm.qwen3vl", "model segment.sam3", "cuda segment.sam3", "s3",
                     "label studio"]
    assert [c.name for c in profile_checks(load_params(profile="demo"))] == ["s3", "label studio"]


def test_checks_run_side_by_side(tmp_path: Path) -> None:
    from pipelines.ops.doctor import Check

    checks = [Check(f"c{i}", lambda: time.sleep(0.5) or "fine") for i in range(6)]
    t0 = time.monotonic()
    results = run_checks(checks)
    assert time.monotonic() - t0 < 2 and [r.name for r in results] == [f"c{i}" for i in range(6)]


def test_hopchain_doctor_prints_one_line_per_check_and_exits_1(tmp_path, monkeypatch, capsys) -> None:
    from pipelines.cli import main

    params = tmp_path / "params.yaml"
    missing, home = tmp_path / "missing-qwen", tmp_path / "stack"
    params.write_text(f"vlm: {{backend: qwen3vl, qwen3vl: {{model: {missing}, device: cpu}}}}\n"
                      f"detect: {{backend: vlm}}\nstack: {{home: {home}}}\n")
    monkeypatch.setenv("HOPCHAIN_S3_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HOPCHAIN_S3_ACCESS_KEY", "k")
    monkeypatch.setenv("HOPCHAIN_S3_SECRET_KEY", "s")
    monkeypatch.setenv("HOPCHAIN_LS_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("HOPCHAIN_LS_TOKEN", "t")
    t0 = time.monotonic()
    assert main(["--params", str(params), "doctor"]) == 1
    assert time.monotonic() - t0 < LIMIT_S
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    assert lines[0] == "hopchain doctor: profile base"
    assert [ln.split(":")[0] for ln in lines[1:]] == ["FAILED  model vlm.qwen3vl", "FAILED  s3", "FAILED  label studio"]
    assert "3 of 3 checks failed" in out.err


def test_a_sam2_checkpoint_is_sized_from_its_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    ckpt = tmp_path / "sam2.1_hiera_large.pt"
    ckpt.write_bytes(b"\0" * (8 << 20))  # 8 MiB of float32 weights
    monkeypatch.setattr(torch, "cuda", _FakeCuda(free_gib=0.001))
    res = _checked(cuda_check("segment.sam2", ModelRef(model=str(ckpt), device="cuda", dtype="float32")))
    assert not res.ok and "0.01 GB checkpoint as float32" in res.detail
