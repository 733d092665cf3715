"""Issue 27: the TRL command of ``docs/releases.md`` trains on released rows, images included.

The fenced ``python`` block under the **TRL** paragraph of ``docs/releases.md`` is extracted and run as
it is, as a file, in a subprocess whose working directory is a released registry folder
(``tests.support.release_rows.build_registry``: shards, the card, the shipped ``pipelines/reward.py``).
Only the environment variables the block reads at its top change: a tiny random-weight Qwen3-VL built
offline (``tests.support.tiny_models.build_qwen3vl``), CPU, one step, two generations of 8 tokens.

A small wrapper around the block (the same interpreter, before the block runs) records, without changing
anything: every call of the reward function (its prompts, images, answers and return values) and every
forward of the policy and of its vision tower (``pixel_values`` or the encoded images, image tokens in
``input_ids``, whether gradients were on). So the test proves the step ran, the shipped reward scored
image-bearing prompts with floats, and the model saw the image when generating and in the gradient step
(TRL before 0.24 drops ``images`` and trains on text alone).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pipelines.config import REPO_ROOT
from tests.support.release_rows import build_registry
from tests.support.tiny_models import build_qwen3vl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = REPO_ROOT / "docs" / "releases.md"

#: Runs ``argv[1]`` (the docs block) as ``__main__`` after hooking the reward function and the policy's
#: forward; writes what it saw to ``argv[2]``.
WRAPPER = r'''
import functools, json, runpy, sys
import torch
import trl

block, report_path = sys.argv[1], sys.argv[2]
report = {"reward_calls": [], "forwards": [], "vision": [], "trl": trl.__version__}
_init = trl.GRPOTrainer.__init__


def _describe_prompt(prompt):
    return [{"role": m["role"], "types": [p.get("type") for p in m["content"]] if isinstance(m["content"], list)
             else "str"} for m in prompt]


def _recorded(func):
    @functools.wraps(func)
    def reward(*args, **kwargs):
        out = func(*args, **kwargs)
        images = kwargs.get("images")
        report["reward_calls"].append({
            "prompts": [_describe_prompt(p) for p in kwargs.get("prompts") or []],
            "images": None if images is None else [[type(im).__module__ + "." + type(im).__name__ for im in ims]
                                                   for ims in images],
            "answers": list(kwargs.get("answer") or []),
            "completions": [c if isinstance(c, str) else c[-1]["content"] for c in kwargs.get("completions") or []],
            "returned": [[type(x).__name__, x] for x in out],
        })
        return out
    return reward


def _init_recording(self, model, reward_funcs, *args, **kwargs):
    funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    _init(self, model, [_recorded(f) for f in funcs], *args, **kwargs)
    image_token_id = self.model.config.image_token_id

    def pre_hook(module, args, kwargs):
        ids, pixels = kwargs.get("input_ids"), kwargs.get("pixel_values")
        report["forwards"].append({
            "grad": torch.is_grad_enabled(),
            "pixel_values": None if pixels is None else list(pixels.shape),
            # transformers 5 encodes the images once before generating and hands the result over
            "mm_encoder_outputs": kwargs.get("mm_encoder_outputs") is not None,
            "image_tokens": 0 if ids is None else int((ids == image_token_id).sum()),
        })

    def vision_hook(module, args, kwargs, output):
        pixels = args[0] if args else kwargs.get("hidden_states", kwargs.get("pixel_values"))
        report["vision"].append({"grad": torch.is_grad_enabled(),
                                 "input": None if pixels is None else list(pixels.shape)})

    report["policy"] = type(self.model).__name__
    self.model.register_forward_pre_hook(pre_hook, with_kwargs=True)
    towers = [m for name, m in self.model.named_modules() if name.rsplit(".", 1)[-1] == "visual"]
    report["vision_towers"] = len(towers)
    for tower in towers:
        tower.register_forward_hook(vision_hook, with_kwargs=True)


trl.GRPOTrainer.__init__ = _init_recording
scope = runpy.run_path(block, run_name="__main__")
trainer = scope["trainer"]
report["global_step"] = trainer.state.global_step
report["log_history"] = trainer.state.log_history
with open(report_path, "w") as fh:
    json.dump(report, fh, default=repr)
'''


def docs_block(text: str, paragraph: str = "**TRL**") -> str:
    """The first fenced ``python`` block after the paragraph that starts with ``paragraph``."""
    start = text.index("\n" + paragraph)
    match = re.compile(r"^```python\n(.*?)^```$", re.S | re.M).search(text, start)
    assert match, f"no python block after {paragraph} in {DOCS}"
    return match.group(1)


def test_the_docs_block_reads_production_defaults_from_the_environment() -> None:
    block = docs_block(DOCS.read_text())
    for name, default in [("MODEL", '"Qwen/Qwen2.5-VL-3B-Instruct"'), ("NUM_GENERATIONS", '"8"'),
                          ("USE_CPU", '"0"'), ("MAX_STEPS", '"-1"'), ("OUTPUT_DIR", '"out"')]:
        assert f'os.environ.get("{name}", {default})' in block, name
    assert "reward_funcs=[trl_reward]" in block and "sys.exit(str(too_old))" in block


def test_the_docs_block_refuses_a_trl_that_ignores_images_in_one_line(tmp_path: Path) -> None:
    """TRL 0.20–0.23 train on text alone without a word: the block stops before loading anything, with the
    release's own reward module's one-line check (``pipelines.reward.MIN_VERSIONS``)."""
    pytest.importorskip("trl")
    registry = build_registry(tmp_path / "registry", n_images=2)
    block = tmp_path / "trl_block.py"
    block.write_text(docs_block(DOCS.read_text()))
    old_trl = "import runpy, sys, trl; trl.__version__ = '0.23.0'; runpy.run_path(sys.argv[1], run_name='__main__')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": ""}
    proc = subprocess.run([sys.executable, "-c", old_trl, str(block)], cwd=registry.root, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "HopChain releases need trl>=0.24, found 0.23.0 (older versions ignore the images column and train on "
        "the text alone): pip install -U 'trl>=0.24'"], proc.stderr[-2000:]


@pytest.fixture(scope="module")
def trl_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pytest.importorskip("trl")
    base = tmp_path_factory.mktemp("trainer-trl")
    model = build_qwen3vl(base / "qwen3vl")
    registry = build_registry(base / "registry")
    block = base / "trl_block.py"
    block.write_text(docs_block(DOCS.read_text()))
    wrapper = base / "wrapper.py"
    wrapper.write_text(WRAPPER)
    report = base / "report.json"
    env = {
        **os.environ,
        "MODEL": str(model), "OUTPUT_DIR": str(base / "out"), "MAX_STEPS": "1", "NUM_GENERATIONS": "2",
        "BATCH_SIZE": "2", "MAX_COMPLETION_LENGTH": "8", "USE_CPU": "1",
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(base / "hf"), "OMP_NUM_THREADS": "2", "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": "",  # the block imports the release's own pipelines/ (sys.path.insert(0, "."))
    }
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(wrapper), str(block), str(report)], cwd=registry.root, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, f"the docs' TRL block failed ({elapsed:.0f} s):\n{proc.stderr[-6000:]}"
    result: dict[str, Any] = json.loads(report.read_text())
    result["elapsed_s"] = elapsed
    result["registry"] = registry
    return result


def test_one_grpo_step_runs_over_released_rows_with_the_shipped_reward(trl_run: dict[str, Any]) -> None:
    assert trl_run["global_step"] == 1
    assert trl_run["policy"] == "Qwen3VLForConditionalGeneration"
    logged = {k for entry in trl_run["log_history"] for k in entry}
    assert {"train_loss", "rewards/trl_reward/mean"} <= logged  # TRL logged the shipped reward by its name
    calls = trl_run["reward_calls"]
    assert calls, "the reward function was never called"
    for call in calls:
        n = len(call["completions"])
        assert n == len(call["prompts"]) == len(call["answers"]) == len(call["returned"]) == 2
        assert all(kind == "float" and 0.0 <= value <= 1.0 for kind, value in call["returned"])
        # the prompts scored are the released, image-bearing ones, and TRL handed the images along
        for prompt in call["prompts"]:
            assert prompt[0]["role"] == "user" and prompt[0]["types"] == ["image", "text"], prompt
        assert call["images"] is not None and all(
            len(ims) == 1 and ims[0].startswith("PIL.") for ims in call["images"]), call["images"]
        assert all(re.fullmatch(r"-?\d+(\.\d+)?", a) for a in call["answers"])


def test_the_policy_saw_the_images_in_generation_and_in_the_gradient_step(trl_run: dict[str, Any]) -> None:
    forwards = trl_run["forwards"]
    assert forwards, "the policy's forward was never called"
    trained = [f for f in forwards if f["grad"]]
    assert trained, "no forward with gradients: no optimisation step"
    for f in trained:  # text-only training would have no pixel_values and no image tokens here
        assert f["pixel_values"] and f["pixel_values"][0] > 0 and f["image_tokens"] > 0, f
    # generation: the prompt's first forward (prefill) carries the image tokens and the encoded image
    prefill = next(f for f in forwards if not f["grad"])
    assert prefill["image_tokens"] > 0 and (prefill["pixel_values"] or prefill["mm_encoder_outputs"]), prefill
    # and the vision tower itself ran, for generation (no gradients) and for the step (gradients)
    vision = trl_run["vision"]
    assert trl_run["vision_towers"] == 1
    assert {v["grad"] for v in vision} == {False, True} and all(v["input"] and v["input"][0] > 0 for v in vision), (
        vision)


def test_the_run_is_quick_enough_for_ci(trl_run: dict[str, Any]) -> None:
    assert trl_run["elapsed_s"] < 90, f"{trl_run['elapsed_s']:.0f} s"
