"""One validated configuration object for the whole platform.

``params.yaml`` holds every knob. Its top level is the *base* configuration plus a
``profiles`` mapping (``demo``, ``gpu``, ...) whose entries are deep-merged over the base
when a profile is selected. Unknown keys are refused everywhere (``extra="forbid"``) and the
error names the offending key path.

Secrets never live here: credentials come from the environment (``HOPCHAIN_S3_*``,
``HOPCHAIN_LS_*``, all listed in :mod:`pipelines.ops.deploy`) or from Airflow connections.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PortsConfig(_Model):
    """TCP ports of the local stack; every service binds 127.0.0.1 only."""

    s3: int = 8333
    s3_master: int = 9333
    s3_volume: int = 8088
    s3_filer: int = 8888
    s3_admin: int = 23646
    label_studio: int = 8081
    airflow: int = 8080


class StackConfig(_Model):
    """The embedded local stack (SeaweedFS S3 + Label Studio + Airflow)."""

    home: str = ".stack"
    ports: PortsConfig = PortsConfig()
    buckets: list[str] = ["hopchain", "hopchain-dvc"]
    airflow_parallelism: int = Field(2, ge=1, le=64)
    gpu_slots: int = Field(1, ge=1)
    airflow_admin: str = "admin"
    label_studio_admin: str = "admin@hopchain.local"
    s3_memory_limit_mb: int = 512


class StoreConfig(_Model):
    """The platform bucket's layout (the keys under each prefix: :mod:`pipelines.store.ledger`)."""

    bucket: str = "hopchain"
    runs_prefix: str = "runs"
    inputs_prefix: str = "inputs"
    batches_prefix: str = "batches"
    consensus_prefix: str = "consensus"
    releases_prefix: str = "releases"
    journal_prefix: str = "annotation-journal"  # every annotation seen, append-only (pipelines.annotation.journal)
    annotators_prefix: str = "annotators"  # the registered annotators (pipelines.annotation.registry)


class IngestConfig(_Model):
    """Ingest, and the limits on one input, each checked before the input is decoded or rasterised
    (a violation is a quarantine row or a reject with its reason; docs/security.md, "Inputs: size,
    shape and paths")."""

    shard_size: int = Field(200, ge=1, le=5000)
    # pixels per image, from the header: Pillow's own MAX_IMAGE_PIXELS; above 2x it Pillow refuses anyway
    max_pixels: int = Field(89_478_485, ge=1, le=178_956_970)
    max_bytes: int = Field(50 * 1024 * 1024, ge=1)  # bytes per image file, from its stat/HEAD before reading
    extensions: list[str] = [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"]
    max_instances: int = Field(1000, ge=1)  # annotated instances per image (COCO import)
    max_polygon_vertices: int = Field(10_000, ge=3)  # per instance, all its polygon rings together
    polygon_margin: float = Field(0.1, ge=0, le=1)  # polygon coordinates within [-m, 1+m] x the image size
    max_polygon_path: float = Field(10.0, gt=0)  # an instance's total edge length, in image perimeters


class ModelRef(_Model):
    """A production checkpoint is configuration: a model id or a local path, never code."""

    model: str = ""
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    batch_size: int = Field(4, ge=1)


class OpenAIEndpoint(_Model):
    """A served model (vLLM/SGLang). ``concurrency``: the most requests in flight at once (the
    backend's bound, and the back-pressure limit); ``max_retries`` per request, on connection errors,
    408/409/429 and 5xx, waiting ``retry_backoff_s`` doubled per attempt (at most ``retry_backoff_max_s``)
    or the server's ``Retry-After`` (at most ``max_retry_after_s``; a 429's holds every request);
    ``seed``: sent with each request, so sampling on a server that honours it repeats."""

    base_url: str = ""
    model: str = ""
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(3, ge=0)
    concurrency: int = Field(8, ge=1)
    retry_backoff_s: float = Field(0.5, ge=0)
    retry_backoff_max_s: float = Field(30.0, ge=0)
    max_retry_after_s: float = Field(120.0, ge=0)
    seed: int | None = None

    @property
    def requests_per_call(self) -> int:
        """Requests a caller hands one ``generate`` call: four rounds of ``concurrency``, so the pool
        stays full while a call's slowest answers come back."""
        return 4 * self.concurrency


class VLMConfig(_Model):
    """The vision-language model, shared by detect (``detect.backend: vlm``), the question writer
    (``questions.writer: vlm``) and the difficulty solver (``questions.difficulty.enabled``):
    Qwen3-VL in-process, or an OpenAI-compatible endpoint (vLLM/SGLang). ``none``: no model; a
    configuration that asks for one anyway is refused at load time."""

    backend: Literal["none", "qwen3vl", "openai"] = "none"
    qwen3vl: ModelRef = ModelRef()
    openai: OpenAIEndpoint = OpenAIEndpoint()

    @property
    def batch_size(self) -> int:
        """Images per model call: the in-process batch, or the endpoint's requests in flight."""
        return self.qwen3vl.batch_size if self.backend == "qwen3vl" else self.openai.concurrency


class DetectConfig(_Model):
    """``vlm``: the shared VLM names the categories (with boxes); ``annotations``: the instances
    shipped with the images (``<input>/instances.json``) stand in for detect and segment."""

    backend: Literal["vlm", "annotations"] = "annotations"
    max_new_tokens: int = Field(512, ge=1)
    boxes: bool = True
    max_categories: int = Field(20, ge=1)


class SegmentConfig(_Model):
    backend: Literal["sam3", "sam2", "sam2_hf", "annotations"] = "annotations"
    sam3: ModelRef = ModelRef()
    sam2: ModelRef = ModelRef()
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_l.yaml"
    sam2_overrides: list[str] = []  # extra hydra overrides for sam2's build_sam2 (tests shrink the model)
    sam2_hf: ModelRef = ModelRef()  # transformers Sam2Model folder (backend sam2_hf)
    prompt_batch: int = Field(16, ge=1)  # sam3: text prompts per forward pass (one image)
    score_threshold: float = Field(0.5, ge=0, le=1)
    mask_threshold: float = Field(0.5, ge=0, le=1)
    min_area: int = Field(32, ge=0)
    dedup_iou: float = Field(0.7, gt=0, le=1)


class DifficultyConfig(_Model):
    enabled: bool = False
    k: int = Field(8, ge=1)
    temperature: float = Field(1.0, ge=0)
    drop_at_pass_rate: float = Field(0.75, ge=0, le=1)  # 6/8


class BlindConfig(_Model):
    """The blind test: the solver answers each question without the image; questions it gets right
    at least ``drop_at_accuracy`` of ``k`` times are dropped (``leakage.blind_solvable``). Runs when
    a solver backend is configured (``difficulty.enabled``) unless switched off."""

    enabled: bool = True
    k: int = Field(4, ge=1)
    temperature: float = Field(1.0, ge=0)
    drop_at_accuracy: float = Field(0.5, gt=0, le=1)


class StabilityConfig(_Model):
    """The perception-stability check (docs/hop-programs.md, "Stable under the detector's doubt"): a
    question is kept only if its answer survives each perturbation of the categories it names."""

    enabled: bool = True
    doubt_score: float = Field(0.6, ge=0, le=1)  # drop the lowest-scored member when below this score
    small_area_frac: float = Field(0.0015, ge=0, lt=1)  # drop the smallest member when below this share
    merge_iou: float = Field(0.5, gt=0, le=1)  # merge the two most overlapping members from this box IoU
    min_fill: float = Field(0.1, ge=0, lt=1)  # drop the members whose mask fills less of their box than this
    # the detector's recall by COCO size bin (small < 32² px, medium < 96² px, large above), measured on an
    # annotated sample of your own images; 1.0 (the default): it misses nothing, and the missed-member rule
    # is off. With it set, a count or rank that has to assume more than max_missed objects the detector
    # likely missed is refused, and so is anything that depends on every member of a category that likely
    # hides more than max_missed_category (its largest member may still serve).
    recall_small: float = Field(1.0, gt=0, le=1)
    recall_medium: float = Field(1.0, gt=0, le=1)
    recall_large: float = Field(1.0, gt=0, le=1)
    max_missed: float = Field(0.5, ge=0)
    max_missed_category: float = Field(0.5, ge=0)


class QuestionsConfig(_Model):
    writer: Literal["program", "vlm"] = "program"
    seed: int = 0
    per_image: int = Field(6, ge=1)
    min_hops: int = Field(3, ge=3, le=6)
    max_hops: int = Field(6, ge=3, le=6)
    min_score: float = Field(0.5, ge=0, le=1)
    min_area: int = Field(32, ge=0)
    max_count: int = Field(15, ge=1)
    # unambiguity margins, set for a reader (docs/hop-programs.md, "Ops")
    area_ratio: float = Field(1.5, ge=1)
    axis_gap: float = Field(0.06, ge=0, lt=1)
    nearest_ratio: float = Field(1.5, ge=1)
    relate_gap: float = Field(0.04, ge=0, lt=1)
    # within a person's reach (docs/hop-programs.md, "Within a person's reach")
    shadow_score: float = Field(0.3, ge=0, le=1)  # detections in [shadow_score, min_score) make a category uncountable
    visible_area_frac: float = Field(0.001, ge=0, lt=1)  # members smaller than this share of the image
    occlusion_overlap: float = Field(0.25, gt=0)  # box overlap that marks an instance as possibly hidden
    colors: bool = True  # name instance colours from the image pixels (reads the images)
    blind: BlindConfig = BlindConfig()
    # balanced answers (docs/hop-programs.md, "Balanced answers"): no answer above this share of the batch
    # (a cap of p keeps the answer entropy >= -log2(p) bits: 3 bits at 0.125), 0 not above its own share,
    # and within one program skeleton no answer above its share (else the question's shape predicts it)
    max_answer_share: float = Field(0.17, gt=0, le=1)
    max_zero_answer_share: float = Field(0.1, gt=0, le=1)
    max_skeleton_answer_share: float = Field(0.25, gt=0, le=1)
    oversample: int = Field(3, ge=1)  # candidates generated per released question, for the balancer
    # attempts per image once it has 3 candidates (one with fewer tries to the end: 4 x per_image x oversample);
    # docs/hop-programs.md, "Generator". The stage's cost is about attempts x 80 us per image: a larger budget
    # buys more questions per image (bench/RESULTS.md, "200 images/s per core")
    attempt_budget: int = Field(20, ge=1)
    # every count/rank draws on at least this many instances (docs/hop-programs.md, "The candidate rule")
    min_candidates: int = Field(3, ge=1)
    stability: StabilityConfig = StabilityConfig()
    variants: list[Literal["full", "half", "single"]] = ["full"]
    difficulty: DifficultyConfig = DifficultyConfig()
    vlm_prompt_version: str = "v1"
    vlm_samples_per_image: int = Field(4, ge=1)  # writer completions asked per image
    vlm_max_new_tokens: int = Field(768, ge=1)  # per writer completion


class SimulatedAnnotators(_Model):
    """Demo/test only: accounts that answer through the real Label Studio API."""

    enabled: bool = False
    count: int = Field(4, ge=1)
    error_rate: float = Field(0.05, ge=0, le=1)
    seed: int = 0
    # how often the simulation reconciles the handout while its annotators work (the trigger's poll)
    handout_poll_s: float = Field(0.5, gt=0)


class AnnotationConfig(_Model):
    project_title: str = "HopChain verification"
    annotators_required: int = Field(4, ge=1)
    import_batch_size: int = Field(500, ge=1)
    deadline_minutes: float = Field(24 * 60, gt=0)
    poll_interval_s: float = Field(30.0, gt=0)
    # serial: each task goes to one annotator at a time, opened to the next after each answer while the
    # answers agree (pipelines.annotation.handout); parallel: to all annotators_required at once.
    handout: Literal["serial", "parallel"] = "serial"
    # a question whose answers can no longer be unanimous leaves the labeling stream at once
    early_stop: bool = True
    # Lifetime of the presigned image URLs in the tasks (S3 caps presigned URLs at 7 days).
    image_url_expiry_s: int = Field(7 * 24 * 3600, ge=60, le=7 * 24 * 3600)
    simulated: SimulatedAnnotators = SimulatedAnnotators()


class ValidationConfig(_Model):
    """Data validation at stage boundaries (``expectations/``).

    ``severity`` maps a stable expectation name (``questions.num_hops_range``) to ``critical``
    (fails the task, blocks downstream) or ``warning`` (reported only); unnamed ones get
    ``default_severity``. Shares are fractions of rows (0..1). Distribution expectations only
    apply to batches of at least ``distribution_min_rows`` rows (they are reported as skipped
    otherwise).
    """

    default_severity: Literal["critical", "warning"] = "critical"
    severity: dict[str, Literal["critical", "warning"]] = {}
    max_answer_share: float = Field(0.35, gt=0, le=1)
    min_category_count: int = Field(0, ge=0)
    max_category_share: float = Field(1.0, gt=0, le=1)
    max_hop_length_share: float = Field(0.6, gt=0, le=1)  # of `full` questions, per hop length
    min_hops_full: int = Field(3, ge=1)
    min_hops_ablation: int = Field(1, ge=1)  # `half` / `single` variants
    max_hops: int = Field(6, ge=1)
    distribution_min_rows: int = Field(50, ge=1)
    partial_unexpected_count: int = Field(20, ge=1, le=1000)  # example rows kept per failure


class ReleaseConfig(_Model):
    """Dataset releases (``pipelines/release``, ``dvc.yaml``); see docs/releases.md."""

    name: str = "hopchain"
    rows_per_shard: int = Field(2000, ge=1)
    max_shards: int = Field(256, ge=1)  # per split: rows_per_shard grows rather than exceed it
    eval_fraction: float = Field(0.1, ge=0, lt=1)
    split_salt: str = "hopchain-split-v1"  # changing it reshuffles which images are eval
    registry_url: str = ""  # default: <stack home>/registry.git (a local bare repository)
    dvc_remote_bucket: str = "hopchain-dvc"
    dvc_remote_prefix: str = "releases"
    push_timeout_s: float = Field(30.0, gt=0)
    push_jobs: int = Field(8, ge=1)
    repro_timeout_s: float = Field(1800.0, gt=0)


class Params(_Model):
    """The root configuration object (``params.yaml``)."""

    profile: str = "base"
    stack: StackConfig = StackConfig()
    store: StoreConfig = StoreConfig()
    ingest: IngestConfig = IngestConfig()
    vlm: VLMConfig = VLMConfig()
    detect: DetectConfig = DetectConfig()
    segment: SegmentConfig = SegmentConfig()
    questions: QuestionsConfig = QuestionsConfig()
    annotation: AnnotationConfig = AnnotationConfig()
    validation: ValidationConfig = ValidationConfig()
    release: ReleaseConfig = ReleaseConfig()

    @field_validator("questions")
    @classmethod
    def _hop_range(cls, v: QuestionsConfig) -> QuestionsConfig:
        if v.min_hops > v.max_hops:
            raise ValueError("questions.min_hops must be <= questions.max_hops")
        return v

    @model_validator(mode="after")
    def _runnable(self) -> Params:
        """Refuse a configuration that validates field by field but cannot run."""
        problems = runnable_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def runnable_problems(params: Params) -> list[str]:
    """``key.path: why`` for each setting that cannot run with the rest of the configuration."""
    problems: list[str] = []
    users = [key for key, wants in (("detect.backend", params.detect.backend == "vlm"),
                                     ("questions.writer", params.questions.writer == "vlm"),
                                     ("questions.difficulty.enabled", params.questions.difficulty.enabled))
             if wants]
    vlm = params.vlm
    if users and vlm.backend == "none":
        problems += [f"{key}: needs a model, but vlm.backend is 'none' (set vlm.backend to qwen3vl or openai)"
                     for key in users]
    if vlm.backend == "qwen3vl" and not vlm.qwen3vl.model:
        problems.append("vlm.qwen3vl.model: empty (a model id or a local checkpoint folder)")
    if vlm.backend == "openai":
        problems += [f"vlm.openai.{k}: empty" for k in ("base_url", "model") if not getattr(vlm.openai, k)]
    seg = params.segment
    if seg.backend != "annotations" and not getattr(seg, seg.backend).model:
        problems.append(f"segment.{seg.backend}.model: empty (segment.backend is {seg.backend!r})")
    if seg.backend in ("sam2", "sam2_hf") and params.detect.backend == "vlm" and not params.detect.boxes:
        problems.append(f"detect.boxes: false, but segment.backend {seg.backend!r} is prompted with boxes")
    return problems


class ConfigError(ValueError):
    """params.yaml is invalid; the message names every offending key path."""


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        if not loc:  # a check across keys (runnable_problems): each message starts with its key path
            lines += [f"  {p}" for p in str(msg).removeprefix("Value error, ").split("; ")]
            continue
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def params_from_dict(raw: dict[str, Any], profile: str | None = None, source: str = "<dict>") -> Params:
    """Validate a raw mapping (``params.yaml`` layout) and apply ``profile`` if given."""
    raw = dict(raw or {})
    profiles = raw.pop("profiles", {}) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(f"invalid configuration in {source}:\n  profiles: must be a mapping")
    merged = raw
    if profile and profile != "base":
        if profile not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConfigError(f"unknown profile {profile!r} in {source} (known: {known})")
        merged = _deep_merge(raw, profiles[profile] or {})
        merged["profile"] = profile
    try:
        return Params.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


class Refused(ConfigError):
    """Something this deployment refuses to do (a release of simulated answers, a simulation where they
    are forbidden): fails a task without retry."""


#: The deployment says whether simulated annotators may run here: ``allow`` only on the local demo stack
#: (its Airflow components get it from ``hopchain stack``); unset or anything else forbids them. The
#: production compose sets ``forbid`` outright.
SIMULATED_ENV = "HOPCHAIN_SIMULATED_ANNOTATORS"


def simulated_allowed(env: Mapping[str, str] | None = None) -> bool:
    """Whether this deployment allows simulated annotators (``HOPCHAIN_SIMULATED_ANNOTATORS=allow``)."""
    value = (os.environ if env is None else env).get(SIMULATED_ENV, "")
    return value.strip().lower() == "allow"


def check_deployment(params: Params, requested_profile: str | None = None,
                     env: Mapping[str, str] | None = None) -> None:
    """Refuse (:class:`ConfigError`, one line) a configuration that turns on simulated annotators
    (``annotation.simulated.enabled``) where the deployment forbids them, whether the deployment's own
    profile does or a run's conf selects one that does (``requested_profile``): the profile belongs to
    the deployment, and only a deployment that says ``HOPCHAIN_SIMULATED_ANNOTATORS=allow`` (the local
    demo stack) runs simulations."""
    env = os.environ if env is None else env
    if not params.annotation.simulated.enabled or simulated_allowed(env):
        return
    deployment = env.get("HOPCHAIN_PROFILE") or "base"
    value = env.get(SIMULATED_ENV) or "unset"
    if requested_profile and requested_profile != deployment:
        raise ConfigError(f"profile {requested_profile!r} from the run's conf turns on simulated annotators "
                          f"(annotation.simulated.enabled), which this deployment (profile {deployment!r}) forbids "
                          f"({SIMULATED_ENV} is {value}): a run may not swap people for simulations")
    raise ConfigError(f"profile {params.profile!r} turns on simulated annotators (annotation.simulated.enabled), "
                      f"which this deployment forbids ({SIMULATED_ENV} is {value}; only the local demo stack "
                      "sets it to allow)")


def load_params(path: str | Path | None = None, profile: str | None = None) -> Params:
    """Load ``params.yaml`` (default: the repository's), selecting ``profile``.

    ``profile`` defaults to the ``HOPCHAIN_PROFILE`` environment variable, else the base.
    """
    path = Path(path or os.environ.get("HOPCHAIN_PARAMS") or DEFAULT_PARAMS)
    profile = profile or os.environ.get("HOPCHAIN_PROFILE") or None
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid configuration in {path}: top level must be a mapping")
    return params_from_dict(raw, profile, source=str(path))


def work_home(params: Params) -> Path:
    """This machine's working folder for the platform (the local stack's state, release work
    folders, the default registry): ``HOPCHAIN_HOME``, else ``stack.home`` relative to the repository."""
    home = Path(os.environ.get("HOPCHAIN_HOME") or params.stack.home)
    return home if home.is_absolute() else REPO_ROOT / home


def profile_names(path: str | Path | None = None) -> list[str]:
    path = Path(path or DEFAULT_PARAMS)
    with open(path, encoding="utf-8") as fh:
        raw = yaml.safe_load(fh) or {}
    return sorted((raw.get("profiles") or {}).keys())
