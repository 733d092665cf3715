"""Issue 27: the verl command of ``docs/releases.md`` is accepted by verl itself, and does what it says.

The fenced ``bash`` block under the **verl** paragraph of ``docs/releases.md`` is run as it is by bash in a
released registry folder (``tests.support.release_rows.build_registry``, its images 1280x960 like real
photos instead of thumbnails, so image tokens count), with a ``python`` on ``PATH`` that records the argv
the shell hands it. Only the variables the block reads at its top change (``MODEL``: a tiny offline Qwen
tokenizer from ``tests.support.tiny_models.build_qwen3vl``; a few runs change ``TRAIN_BATCH_SIZE``,
``MAX_PROMPT_LENGTH`` or ``N_GPUS`` to show what verl refuses).

That argv is then given, in ``.venv-verl`` (``requirements/trainer-verl.lock``: verl 0.9.1 with all its
declared dependencies, CPU torch), to verl's own ``verl.trainer.main_ppo.main`` exactly as ``python -m
verl.trainer.main_ppo`` would: hydra composes ``verl/trainer/config/ppo_trainer.yaml`` with the overrides,
then ``auto_set_device`` and ``validate_config`` run; only ``run_ppo`` (Ray workers on GPUs) is replaced by
a recorder. On the composed config, verl's own next steps run: the rollout config dataclass
(``actor_rollout_ref.rollout.name`` is mandatory), the custom-reward loader ``get_custom_reward_fn`` and
the reward manager (``load_reward_manager``, the ``naive`` manager calling ``compute_score`` with its keyword
arguments), the model config (tokenizer), ``create_rl_dataset`` (``RLHFDataset`` with ``prompt_key`` /
``image_key``, its image resizing and its over-long prompt filter) and the dataloader the trainer builds.

Two stand-ins, both because transformers 5's Qwen image processors and ``qwen_vl_utils`` import torchvision,
which has no CPU build beside the CPU torch of ``.venv-verl`` (the CUDA one is 5.5 GB): a processor that
counts tokens as Qwen2.5-VL's does (one per 28x28 pixels, same resize rule), and an import of
``qwen_vl_utils`` with a placeholder ``torchvision`` module that is removed right after (only its video
readers use it). The old docs command is kept below, so the test also shows what verl refuses in it.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from pipelines.config import REPO_ROOT
from pipelines.release.synthetic import make_inputs
from tests.support import release_rows
from tests.support.tiny_models import build_qwen3vl

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DOCS = REPO_ROOT / "docs" / "releases.md"
VERL_PYTHON = REPO_ROOT / ".venv-verl" / "bin" / "python"
IMAGE_SIZE = (1280, 960)  # a phone photo scaled down: 1,564 image tokens for Qwen2.5-VL

#: The verl block of docs/releases.md before issue 27, as trainers copied it.
OLD_BLOCK = r"""python -m verl.trainer.main_ppo algorithm.adv_estimator=grpo \
  data.train_files="$(ls data/train/*.parquet | paste -sd, | sed 's/^/[/;s/$/]/')" \
  data.val_files="$(ls data/eval/*.parquet | paste -sd, | sed 's/^/[/;s/$/]/')" \
  data.prompt_key=verl_prompt data.image_key=images \
  custom_reward_function.path=pipelines/reward.py custom_reward_function.name=compute_score \
  actor_rollout_ref.model.path=Qwen/Qwen2.5-VL-7B-Instruct actor_rollout_ref.rollout.n=8 \
  trainer.n_gpus_per_node=8 trainer.nnodes=1
"""

#: A ``python`` for PATH: writes the argv it was given (after the shell's expansions) as JSON.
ARGV_RECORDER = """#!{python}
import json, os, sys
with open(os.environ["VERL_ARGV_OUT"], "w") as f:
    json.dump(sys.argv[1:], f)
"""

#: Runs in .venv-verl (argv: SPEC REPORT): verl's entry point and next steps on each run's overrides.
PROBE = r'''
"""Run in .venv-verl: verl 0.9.1's own entry point, config, dataset and reward code on given overrides.

argv: SPEC REPORT. SPEC (JSON): {"runs": [{"name", "overrides", "stages"}], "cases": [...]}.
Each run: ``verl.trainer.main_ppo.main()`` with ``sys.argv`` = the overrides (what ``python -m
verl.trainer.main_ppo <overrides>`` does: hydra composes ``ppo_trainer.yaml`` with them, then
``auto_set_device`` and ``validate_config``), with ``run_ppo`` (Ray, GPUs) replaced by a recorder.
Then the stages the trainer runs next, with verl's own functions: the rollout config dataclass, the
custom-reward loader, the model config (tokenizer), the RL dataset and its dataloader, the reward manager.
Every outcome (or refusal: exception type and message) goes to REPORT.
"""

import json
import os
import sys
import traceback

os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # hydra re-raises verl's own exception instead of exiting


def refusal(exc):
    return f"{type(exc).__name__}: {exc}".strip()


class Qwen25VLTokenCount:
    """A processor that counts tokens as Qwen2.5-VL's does (one token per 28x28 pixels, 3,136 to 12,845,056
    pixels per image), on the tiny offline tokenizer: transformers 5's Qwen image processors need torchvision,
    which has no CPU build beside the CPU torch of .venv-verl."""

    class image_processor:  # noqa: N801 - read by RLHFDataset as processor.image_processor.patch_size
        patch_size = 14

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def apply_chat_template(self, messages, **kwargs):
        return self.tokenizer.apply_chat_template(messages, **kwargs)

    def __call__(self, text, images=None, videos=None, return_tensors="pt", **kwargs):
        import torch
        from qwen_vl_utils import smart_resize

        assert videos is None and len(text) == 1
        pieces = text[0].split("<|image_pad|>")
        assert len(pieces) == len(images or []) + 1, (len(pieces), len(images or []))
        out = pieces[0]
        for image, piece in zip(images or [], pieces[1:], strict=True):
            h, w = smart_resize(image.height, image.width, factor=28, min_pixels=3136, max_pixels=12845056)
            out += "<|image_pad|>" * (h * w // (28 * 28)) + piece
        ids = self.tokenizer(out, add_special_tokens=False)["input_ids"]
        return {"input_ids": torch.tensor([ids])}


def stage_rollout(cfg, tools, out):
    from verl.utils.config import omega_conf_to_dataclass

    rollout = omega_conf_to_dataclass(cfg.actor_rollout_ref.rollout)
    out["rollout"] = {"name": rollout.name, "n": rollout.n, "prompt_length": rollout.prompt_length,
                      "response_length": rollout.response_length}


def score_cases(fn, cases, tools):
    got = []
    for case in cases:
        extra_info = dict(case["extra_info"], num_turns=2, rollout_reward_scores={})  # what the manager adds
        got.append(fn(data_source=case["data_source"], solution_str=case["completion"],
                      ground_truth=case["ground_truth"], extra_info=extra_info,
                      # passed by verl's NaiveRewardManager when a reward router runs:
                      reward_router_address=None, reward_model_tokenizer=None))
    return got


def stage_reward(cfg, tools, out):
    from verl.trainer.ppo.reward import get_custom_reward_fn

    fn = get_custom_reward_fn(cfg)
    if fn is None:
        raise LookupError("get_custom_reward_fn(config) is None: verl would score with its default "
                          "compute_score, not the release's (reward.custom_reward_function.path is "
                          f"{cfg.reward.custom_reward_function.path!r})")
    out["reward_scores"] = score_cases(fn, tools["cases"], tools)


def stage_model(cfg, tools, out):
    from verl.utils.config import omega_conf_to_dataclass

    model = omega_conf_to_dataclass(cfg.actor_rollout_ref.model)
    tools["tokenizer"] = model.tokenizer
    out["model"] = {"tokenizer": type(model.tokenizer).__name__,
                    "processor": type(model.processor).__name__ if model.processor is not None else None}


def prompt_lengths(dataset, processor):
    """What RLHFDataset.maybe_filter_out_long_prompts measures per row (its doc2len), with its own steps."""
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.tokenizer import build_multimodal_processor_inputs

    lengths = []
    for i in range(len(dataset.dataframe)):
        doc = dataset.dataframe[i]
        messages = dataset._build_messages(doc, key=dataset.prompt_key)
        raw = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        images, videos, audios = RLHFDataset._process_multi_modal_info(messages, dataset.image_patch_size,
                                                                       dataset.config)
        assert images, "a released row without its image"
        ids = build_multimodal_processor_inputs(processor, text=[raw], images=images, videos=videos,
                                                audio=audios)["input_ids"][0]
        lengths.append(len(ids))
    return lengths


def import_qwen_vl_utils():
    """qwen_vl_utils (verl's image resizing) imports torchvision at module level for its video readers only;
    .venv-verl has no torchvision (no CPU build beside its CPU torch). Import it with a placeholder module
    that is removed again right after, so nothing else ever sees a torchvision; the image path never calls it."""
    import importlib.util
    import types

    if importlib.util.find_spec("torchvision") is not None:
        import qwen_vl_utils
        return qwen_vl_utils
    fake = {name: types.ModuleType(name) for name in ("torchvision", "torchvision.io", "torchvision.transforms")}
    fake["torchvision"].__version__ = "0.0.0"
    fake["torchvision"].io = fake["torchvision.io"]
    fake["torchvision"].transforms = fake["torchvision.transforms"]
    fake["torchvision.transforms"].InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    sys.modules.update(fake)
    try:
        import qwen_vl_utils
    finally:
        for name in fake:
            sys.modules.pop(name, None)
    return qwen_vl_utils


def stage_data(cfg, tools, out):
    import pyarrow.parquet as pq
    from omegaconf import OmegaConf
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
    from verl.utils.dataset.rl_dataset import collate_fn

    import_qwen_vl_utils()
    tokenizer = tools["tokenizer"]
    processor = Qwen25VLTokenCount(tokenizer)
    all_rows = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    all_rows.filter_overlong_prompts = False
    data = out["data"] = {}
    for split, files, is_train, key in (("train", cfg.data.train_files, True, "train_max_samples"),
                                        ("val", cfg.data.val_files, False, "val_max_samples")):
        dataset = create_rl_dataset(files, cfg.data, tokenizer, processor, is_train=is_train,
                                    max_samples=cfg.data.get(key, -1))
        item = dataset[0] if len(dataset) else None
        unfiltered = type(dataset)(list(files), tokenizer, all_rows, processor)  # every released row, measured
        data[split] = {
            "released_rows": sum(pq.ParquetFile(f).metadata.num_rows for f in files),
            "rows": len(dataset),
            "prompt_lengths": prompt_lengths(unfiltered, processor),
            "first_prompt_parts": [p["type"] for p in item["raw_prompt"][0]["content"]] if item else None,
            "first_ground_truth": item["reward_model"]["ground_truth"] if item else None,
        }
        if is_train:
            tools["train_dataset"] = dataset
    train = tools.pop("train_dataset")
    batch = cfg.data.get("gen_batch_size", None) or cfg.data.train_batch_size
    loader = StatefulDataLoader(dataset=train, batch_size=batch, num_workers=0, drop_last=True,
                                collate_fn=collate_fn, sampler=create_rl_sampler(cfg.data, train))
    data["train_batches"] = len(loader)
    data["steps_per_epoch"] = len(train) // cfg.data.train_batch_size  # verl's v1 trainer, _init_dataloader


def stage_manager(cfg, tools, out):
    import numpy as np
    import torch
    from verl import DataProto
    from verl.trainer.ppo.reward import load_reward_manager

    tokenizer = tools["tokenizer"]
    manager = load_reward_manager(cfg, tokenizer)
    scores = []
    for case in tools["cases"]:
        response = tokenizer(case["completion"], add_special_tokens=False, return_tensors="pt")["input_ids"]
        prompt = torch.tensor([tokenizer("Q", add_special_tokens=False)["input_ids"]])
        batch = DataProto.from_dict(
            tensors={"prompts": prompt, "responses": response,
                     "attention_mask": torch.ones(1, prompt.shape[1] + response.shape[1], dtype=torch.long)},
            non_tensors={"data_source": np.array([case["data_source"]], dtype=object),
                         "reward_model": np.array([{"style": "rule", "ground_truth": case["ground_truth"]}],
                                                  dtype=object),
                         "extra_info": np.array([dict(case["extra_info"])], dtype=object)},
        )
        result = manager.loop.run_until_complete(manager.run_single(batch))
        scores.append(result["reward_score"])
    out["manager"] = {"class": type(manager).__name__, "scores": scores}


STAGES = {"rollout": stage_rollout, "reward": stage_reward, "model": stage_model, "data": stage_data,
          "manager": stage_manager}


def main():
    spec_path, report_path = sys.argv[1:3]
    spec = json.load(open(spec_path))
    import verl
    import verl.trainer.main_ppo as main_ppo

    seen = {}

    def record_run_ppo(config, task_runner_class):
        seen["config"] = config

    main_ppo.run_ppo = record_run_ppo
    tools = {"cases": spec["cases"]}
    report = {"verl": verl.__version__, "runs": {}}
    for run in spec["runs"]:
        out = report["runs"][run["name"]] = {}
        seen.clear()
        sys.argv = [main_ppo.__file__, *run["overrides"]]
        try:
            main_ppo.main()
            out["main"] = "ok"
        except BaseException as exc:  # hydra's SystemExit included
            out["main"] = refusal(exc)
            out["trace"] = traceback.format_exc()[-3000:]
            continue
        cfg = seen["config"]
        out["n_gpus"] = cfg.trainer.n_gpus_per_node * cfg.trainer.nnodes
        out["max_prompt_length"] = cfg.data.max_prompt_length
        for name in run["stages"]:
            try:
                STAGES[name](cfg, tools, out)
                out[name + "_stage"] = "ok"
            except Exception as exc:
                out[name + "_stage"] = refusal(exc)
                out[name + "_trace"] = traceback.format_exc()[-3000:]
    json.dump(report, open(report_path, "w"), indent=1, default=str)


if __name__ == "__main__":
    main()
'''


def docs_block(text: str, paragraph: str = "**verl**") -> str:
    """The one ``bash`` block under ``paragraph`` (up to the next section), verbatim."""
    section = text[text.index(paragraph):]
    section = section[:section.index("\n## ")] if "\n## " in section else section
    blocks = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1, f"expected one bash block under {paragraph}, found {len(blocks)}"
    return blocks[0]


def shell_argv(block: str, cwd: Path, bin_dir: Path, env: dict[str, str]) -> list[str]:
    """The argv bash hands ``python`` when it runs ``block`` in ``cwd`` (``python -m`` included)."""
    out = bin_dir / "argv.json"
    out.unlink(missing_ok=True)
    run_env = {**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "VERL_ARGV_OUT": str(out)}
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=cwd, env=run_env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    argv = json.loads(out.read_text())
    assert argv[:2] == ["-m", "verl.trainer.main_ppo"], argv
    return argv[2:]


def with_override(overrides: list[str], key: str, value: str) -> list[str]:
    """``overrides`` with ``key=value`` replacing any earlier value of ``key`` (kept in place), or appended."""
    item = f"{key}={value}"
    if any(o.startswith(key + "=") for o in overrides):
        return [item if o.startswith(key + "=") else o for o in overrides]
    return [*overrides, item]


def reward_cases(registry: Path) -> list[dict[str, Any]]:
    """Completions for a released row, with the score the release's rule gives them."""
    shard = sorted((registry / "data" / "train").glob("*.parquet"))[0]
    row = pq.read_table(shard).to_pylist()[0]
    truth = row["reward_model"]["ground_truth"]
    wrong = str(Decimal(truth) + 1)
    base = {"data_source": row["data_source"], "ground_truth": truth, "extra_info": row["extra_info"]}
    return [
        {**base, "completion": f"I count the marked objects one by one.\nAnswer: {truth}", "expected": 1.0},
        {**base, "completion": f"<think>At first it looks like {wrong}.</think>\nAnswer: {truth}", "expected": 1.0},
        {**base, "completion": f"I count the marked objects one by one.\nAnswer: {wrong}", "expected": 0.0},
        {**base, "completion": "", "expected": 0.0},
    ]


@pytest.fixture(scope="module")
def verl_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not VERL_PYTHON.exists():
        pytest.skip(f"{VERL_PYTHON.relative_to(REPO_ROOT)} is missing: run scripts/setup.sh "
                    "(it builds it from requirements/trainer-verl.lock)")
    started = time.monotonic()
    base = tmp_path_factory.mktemp("verl")
    with pytest.MonkeyPatch.context() as mp:  # photo-sized images, so a prompt's image tokens are realistic
        mp.setattr(release_rows, "make_inputs", functools.partial(make_inputs, size=IMAGE_SIZE))
        registry = release_rows.build_registry(base / "registry").root
    model = build_qwen3vl(base / "qwen3vl")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").write_text(ARGV_RECORDER.format(python=sys.executable))
    (bin_dir / "python").chmod(0o755)

    block = docs_block(DOCS.read_text())
    argv = functools.partial(shell_argv, cwd=registry, bin_dir=bin_dir)
    doc = argv(block, env={"MODEL": str(model)})
    tiny_old = with_override(argv(OLD_BLOCK, env={}), "actor_rollout_ref.model.path", str(model))
    old_mbs = with_override(tiny_old, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu", "2")
    old_all_mbs = with_override(old_mbs, "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu", "4")
    everything = ["rollout", "reward", "model", "data", "manager"]
    runs = [
        {"name": "docs", "overrides": doc, "stages": everything},
        {"name": "docs_batch_8", "overrides": argv(block, env={"MODEL": str(model), "TRAIN_BATCH_SIZE": "8"}),
         "stages": ["model", "data"]},
        {"name": "docs_prompt_512", "stages": ["model", "data"],
         "overrides": argv(block, env={"MODEL": str(model), "TRAIN_BATCH_SIZE": "8", "MAX_PROMPT_LENGTH": "512"})},
        {"name": "docs_3_gpus", "overrides": argv(block, env={"MODEL": str(model), "N_GPUS": "3"}), "stages": []},
        {"name": "old", "overrides": tiny_old, "stages": []},
        {"name": "old_actor_micro_batch", "overrides": old_mbs, "stages": []},
        {"name": "old_all_micro_batches", "overrides": old_all_mbs, "stages": ["rollout", "reward", "model", "data"]},
    ]
    spec, report, probe = base / "spec.json", base / "report.json", base / "verl_probe.py"
    cases = reward_cases(registry)
    spec.write_text(json.dumps({"runs": runs, "cases": cases}))
    probe.write_text(PROBE)
    env = {**os.environ, "HF_HOME": str(base / "hf"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": ""}
    proc = subprocess.run([str(VERL_PYTHON), str(probe), str(spec), str(report)], cwd=registry, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and report.exists(), proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(report.read_text())
    out.update(seconds=time.monotonic() - started, cases=cases)
    return out


def run(verl_runs: dict[str, Any], name: str) -> dict[str, Any]:
    return verl_runs["runs"][name]


def ok(result: dict[str, Any], key: str) -> None:
    assert result[key] == "ok", result.get(key.replace("_stage", "_trace"), result.get("trace", result[key]))


def test_the_block_sets_production_defaults_at_its_top() -> None:
    block = docs_block(DOCS.read_text())
    top = dict(re.findall(r"^(\w+)=\$\{\1:-([^}]+)\}", block, flags=re.M))
    assert top == {"MODEL": "Qwen/Qwen2.5-VL-7B-Instruct", "N_GPUS": "8", "NNODES": "1", "TRAIN_BATCH_SIZE": "128",
                   "MAX_PROMPT_LENGTH": "8192"}
    assert "python -m verl.trainer.main_ppo" in block


def test_verl_composes_and_validates_the_documented_command(verl_runs: dict[str, Any]) -> None:
    docs = run(verl_runs, "docs")
    assert verl_runs["verl"] == "0.9.1"
    ok(docs, "main")
    assert docs["n_gpus"] == 8  # validated with the command's own GPU count (8 per node, 1 node)
    ok(docs, "rollout_stage")
    assert docs["rollout"] == {"name": "vllm", "n": 8, "prompt_length": 8192, "response_length": 2048}
    ok(run(verl_runs, "docs_batch_8"), "main")  # a smaller batch, as the note on batch size suggests


def test_verl_refuses_what_it_should(verl_runs: dict[str, Any]) -> None:
    """Not vacuous: the same checks refuse the old command, step by step, and a GPU count the batch misses."""
    old = run(verl_runs, "old")
    assert "[actor] Please set at least one of 'actor.ppo_micro_batch_size' or " \
           "'actor.ppo_micro_batch_size_per_gpu'" in old["main"]
    assert "Please set at least one of 'actor_rollout_ref.rollout.log_prob_micro_batch_size' or " \
           "'actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu'" in run(verl_runs, "old_actor_micro_batch")["main"]
    three = run(verl_runs, "docs_3_gpus")
    assert "real_train_batch_size (1024) must be divisible by minimal possible batch size (3)" in three["main"]

    passed = run(verl_runs, "old_all_micro_batches")
    ok(passed, "main")  # validate_config passes now, but the trainer's next steps still refuse:
    assert "Missing mandatory value: actor_rollout_ref.rollout.name" in passed["rollout_stage"]
    assert passed["reward_stage"].startswith("LookupError: get_custom_reward_fn(config) is None")
    ok(passed, "data_stage")
    lengths = passed["data"]["train"]["prompt_lengths"]
    assert passed["max_prompt_length"] == 512 and min(lengths) > 512  # the rollout stops on the first one


def test_every_released_prompt_fits_the_documented_max_prompt_length(verl_runs: dict[str, Any]) -> None:
    docs = run(verl_runs, "docs")
    ok(docs, "model_stage")
    ok(docs, "data_stage")
    for split in ("train", "val"):
        data = docs["data"][split]
        assert data["rows"] == data["released_rows"] > 0, (split, data)  # the filter dropped nothing
        assert data["first_prompt_parts"] == ["image", "text"]  # verl_prompt's <image> became the image
        assert 1564 < max(data["prompt_lengths"]) <= docs["max_prompt_length"] == 8192, data["prompt_lengths"]
    # 512 (verl's default, the old command's) is shorter than every prompt: verl's filter drops them all
    # and its sampler refuses the empty dataset.
    short = run(verl_runs, "docs_prompt_512")
    assert short["data"]["train"]["rows"] == 0 < short["data"]["train"]["released_rows"]
    assert "num_samples should be a positive integer value, but got num_samples=0" in short["data_stage"]


def test_batch_size_against_the_dataset_size(verl_runs: dict[str, Any]) -> None:
    """The production batch (128) is more than a small release's train rows: verl makes no step."""
    docs = run(verl_runs, "docs")["data"]
    assert docs["train"]["rows"] < 128 and docs["train_batches"] == docs["steps_per_epoch"] == 0
    small = run(verl_runs, "docs_batch_8")
    ok(small, "data_stage")
    rows = small["data"]["train"]["rows"]
    assert small["data"]["train_batches"] == small["data"]["steps_per_epoch"] == rows // 8 >= 1


def test_verl_loads_the_shipped_reward_and_calls_it_with_its_keywords(verl_runs: dict[str, Any]) -> None:
    docs = run(verl_runs, "docs")
    expected = [c["expected"] for c in verl_runs["cases"]]
    ok(docs, "reward_stage")  # get_custom_reward_fn, called with reward_router_address & reward_model_tokenizer
    assert docs["reward_scores"] == expected
    ok(docs, "manager_stage")  # verl's reward manager: decodes the response tokens, calls compute_score
    assert docs["manager"] == {"class": "NaiveRewardManager", "scores": expected}


def test_the_run_is_quick_enough_for_ci(verl_runs: dict[str, Any]) -> None:
    assert verl_runs["seconds"] < 90, verl_runs["seconds"]
