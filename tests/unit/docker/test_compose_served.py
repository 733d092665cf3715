"""The served VLM in the production compose (issue 31): `--profile served` renders a vLLM service that
binds loopback, reserves its GPU, has a health check, and takes its checkpoint from configuration; the
`gpu-served` params profile points the platform's VLM at it."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.config import load_params
from pipelines.ops.deploy import read_env_file

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
DOCKER = REPO / "docker"
COMPOSE_BIN = shutil.which("docker-compose")


def _served(tmp_path: Path, **overrides: str) -> dict[str, Any]:
    if COMPOSE_BIN is None:
        pytest.skip("docker-compose not installed (Debian: apt-get install docker-compose)")
    env = {k: (v or secrets.token_hex(20)) for k, v in read_env_file(DOCKER / "env.example").items()}
    env.update(overrides)
    env_file = tmp_path / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    proc = subprocess.run([COMPOSE_BIN, "--env-file", str(env_file), "-f", str(DOCKER / "compose.yaml"),
                           "--profile", "served", "config"], capture_output=True, text=True, timeout=60, cwd=DOCKER)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["services"]["vllm"]


def test_the_served_profile_renders_a_vllm_service_on_loopback_with_its_gpu(tmp_path: Path) -> None:
    svc = _served(tmp_path, VLLM_MODEL="/models/qwen3-vl-8b", VLLM_GPU_DEVICE_ID="1")
    assert svc["image"].startswith("vllm/vllm-openai:v") and svc["profiles"] == ["served"]
    assert svc["command"][0] == "/models/qwen3-vl-8b"  # the checkpoint is configuration
    assert "--served-model-name=qwen3-vl" in svc["command"]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": ["1"], "capabilities": ["gpu"]}]
    assert "/health" in " ".join(svc["healthcheck"]["test"])
    assert svc["environment"]["HF_HUB_OFFLINE"] == "1"  # nothing downloaded at run time


def test_vllm_is_opt_in_and_binds_loopback() -> None:
    vllm = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]["vllm"]
    assert vllm["profiles"] == ["served"]  # `docker compose up` alone does not start it
    assert vllm["ports"] == ["127.0.0.1:8000:8000"]


def test_the_gpu_served_params_profile_uses_the_served_model() -> None:
    env = read_env_file(DOCKER / "env.example")
    params = load_params(REPO / "params.yaml", "gpu-served")
    gpu = load_params(REPO / "params.yaml", "gpu")
    assert params.vlm.backend == "openai" and params.vlm.openai.base_url == "http://vllm:8000/v1"
    assert params.vlm.openai.model == env["VLLM_SERVED_MODEL_NAME"]
    assert params.detect == gpu.detect and params.segment == gpu.segment and params.questions == gpu.questions
