"""``hopchain doctor``: preflight checks that a profile can run here, each in seconds.

Every check answers one question about the selected configuration and prints one line: ``ok`` with
what it found, or ``FAILED`` with why and what to do. The same checks are the first task of
``hopchain_nightly`` (with the Airflow connections and the ``gpu`` pool added by the plugin), so a
broken configuration fails the run before any shard waits for a GPU slot.

Checks (only those the profile needs):

* ``model <key>`` — each configured checkpoint resolves **without downloading**: a local folder or
  file, or the local Hugging Face cache (``HF_HOME``). Downloads are off unless
  ``HOPCHAIN_ALLOW_DOWNLOADS=1`` (:func:`pipelines.vlm.backends.locate_model`).
* ``cuda <key>`` — ``device: cuda[:N]`` has a visible GPU with enough free memory for the weights in
  the configured dtype (estimated from the checkpoint's files, else from the ``…8B…`` in its id).
* ``vlm endpoint`` — the OpenAI-compatible endpoint answers ``GET /models`` and serves the model.
* ``s3`` — the endpoint answers, the credentials are accepted, and the platform and DVC buckets exist.
* ``label studio`` — the server answers, the token is accepted, the project exists (or will be made).

No check takes longer than ``timeout_s`` (default 10 s): each runs in its own thread and one that has
not answered by then is reported as failed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.config import ModelRef, Params

CHECK_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict: ``detail`` says what was found (or why it failed), ``fix`` what to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    seconds: float = 0.0

    def line(self) -> str:
        if self.ok:
            return f"ok      {self.name}: {self.detail} [{self.seconds:.1f}s]"
        fix = f" ({self.fix})" if self.fix else ""
        return f"FAILED  {self.name}: {self.detail}{fix} [{self.seconds:.1f}s]"


class CheckFailed(Exception):
    """Raised inside a check: ``str(err)`` is why, ``fix`` what to do."""

    def __init__(self, why: str, fix: str = ""):
        super().__init__(why)
        self.fix = fix


@dataclass
class Check:
    """A named probe: returns the ``ok`` detail, or raises :class:`CheckFailed`."""

    name: str
    probe: Callable[[], str]
    timeout_s: float = CHECK_TIMEOUT_S
    fix_on_timeout: str = "check that the service is up and reachable from this machine"
    imports: tuple[str, ...] = ()  # modules imported before the clock starts (torch alone can take seconds)


def run_check(check: Check) -> CheckResult:
    """Run one check in a daemon thread, capped at ``check.timeout_s`` (its imports not counted)."""
    import importlib

    box: dict[str, Any] = {}
    for module in check.imports:
        try:
            importlib.import_module(module)
        except ImportError as missing:
            return CheckResult(check.name, False, f"cannot import {module}: {missing}", "reinstall the environment")

    def target() -> None:
        try:
            box["detail"] = check.probe()
        except CheckFailed as err:
            box["failed"] = err
        except Exception as err:  # noqa: BLE001 - any surprise is this check's failure, reported in its line
            box["failed"] = CheckFailed(f"{type(err).__name__}: {_first_line(err)}")

    t0 = time.monotonic()
    thread = threading.Thread(target=target, name=f"doctor:{check.name}", daemon=True)
    thread.start()
    thread.join(check.timeout_s)
    took = time.monotonic() - t0
    if thread.is_alive():
        return CheckResult(check.name, False, f"no answer within {check.timeout_s:.0f} s", check.fix_on_timeout, took)
    if "failed" in box:
        failed: CheckFailed = box["failed"]
        return CheckResult(check.name, False, str(failed), failed.fix, took)
    return CheckResult(check.name, True, str(box.get("detail", "")), "", took)


def run_checks(checks: Sequence[Check]) -> list[CheckResult]:
    """Run every check at once (each within its own timeout); results in the given order."""
    results: list[CheckResult | None] = [None] * len(checks)

    def one(i: int) -> None:
        results[i] = run_check(checks[i])

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(len(checks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for r in results if r is not None]


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


# -- models ------------------------------------------------------------------------------------------
def configured_models(params: Params) -> list[tuple[str, ModelRef]]:
    """``(params key, ModelRef)`` for every in-process model the profile loads."""
    out: list[tuple[str, ModelRef]] = []
    if params.vlm.backend == "qwen3vl":
        out.append(("vlm.qwen3vl", params.vlm.qwen3vl))
    seg = params.segment
    if seg.backend in ("sam3", "sam2", "sam2_hf"):
        out.append((f"segment.{seg.backend}", getattr(seg, seg.backend)))
    return out


def model_check(key: str, ref: ModelRef, *, single_file: bool = False) -> Check:
    def probe() -> str:
        from pipelines.vlm.backends import ModelUnavailable, locate_model

        try:
            found = locate_model(ref.model, key=f"{key}.model", single_file=single_file)
        except ModelUnavailable as err:
            raise CheckFailed(f"{err.what}: {err.why}", err.fix) from None
        return found.describe()

    return Check(f"model {key}", probe, imports=("huggingface_hub",))


_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
_SIZE_IN_ID = re.compile(r"(?<![A-Za-z0-9.])(\d+(?:\.\d+)?)\s*[Bb](?![A-Za-z])")


def estimate_weight_bytes(ref: ModelRef, device: str) -> tuple[int | None, str]:
    """Bytes the weights take on ``device`` in the configured dtype, and how it was estimated.

    From the checkpoint's files when they are here (the safetensors index's ``total_size``, else the
    weight files' sizes; stored dtype from ``config.json``), else from a parameter count in the id
    (``Qwen3-VL-8B`` → 8e9 parameters). ``None`` when neither is known.
    """
    import json

    from pipelines.vlm.backends import ModelUnavailable, locate_model

    dtype = ref.dtype if ref.dtype != "auto" else ("bfloat16" if device.startswith("cuda") else "float32")
    per_param = _BYTES[dtype]
    try:
        found = locate_model(ref.model, key="", single_file=Path(ref.model).suffix in (".pt", ".pth"))
    except ModelUnavailable:
        found = None
    if found is not None and found.path is not None and found.path.is_dir():
        folder = found.path
        stored = 4
        cfg_file = folder / "config.json"
        if cfg_file.is_file():
            cfg = json.loads(cfg_file.read_text())
            tdt = cfg.get("dtype") or cfg.get("torch_dtype") or (cfg.get("text_config") or {}).get("dtype")
            stored = _BYTES.get(str(tdt), 4)
        total = 0
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            total = int(json.loads(index.read_text()).get("metadata", {}).get("total_size", 0))
        if not total:
            total = sum(f.stat().st_size for f in folder.iterdir()
                        if f.suffix in (".safetensors", ".bin", ".pt", ".pth") and f.is_file())
        if total:
            return int(total / stored * per_param), f"{total / 1e9:.2f} GB of weights as {dtype}"
    if found is not None and found.path is not None and found.path.is_file():  # a sam2 checkpoint: float32
        total = found.path.stat().st_size
        return int(total / 4 * per_param), f"{total / 1e9:.2f} GB checkpoint as {dtype}"
    m = _SIZE_IN_ID.search(Path(ref.model).name)
    if m:
        n = float(m.group(1)) * 1e9
        return int(n * per_param), f"~{m.group(1)}B parameters (from the id) as {dtype}"
    return None, "size unknown"


def cuda_check(key: str, ref: ModelRef, *, headroom: float = 1.2) -> Check:
    """``device: cuda[:N]`` → a visible GPU with free memory ≥ weights × ``headroom``."""

    def probe() -> str:
        import torch

        device = ref.device
        if not torch.cuda.is_available():
            raise CheckFailed(
                f"{key}.device is {device!r}, but torch {torch.__version__} sees no CUDA GPU on this machine",
                f"run on a GPU worker of the gpu queue, or set {key}.device: cpu or auto in params.yaml",
            )
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise CheckFailed(f"{key}.device is {device!r}, but only {count} GPU(s) are visible",
                              f"set {key}.device to cuda:0..cuda:{count - 1} or check CUDA_VISIBLE_DEVICES")
        free, total = torch.cuda.mem_get_info(index)
        need, how = estimate_weight_bytes(ref, "cuda")
        name = torch.cuda.get_device_name(index)
        have = f"{name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free"
        if need is None:
            return f"{have}; model size unknown, memory not estimated"
        want = need * headroom
        if free < want:
            raise CheckFailed(
                f"{have}, the weights need ~{want / 2**30:.1f} GiB ({how}, +{headroom - 1:.0%})",
                f"free the GPU, use a larger one, a smaller checkpoint, or {key}.dtype: bfloat16",
            )
        return f"{have}; needs ~{want / 2**30:.1f} GiB ({how})"

    return Check(f"cuda {key}", probe, fix_on_timeout="torch did not answer: check the CUDA driver",
                 imports=("torch",))


# -- services ----------------------------------------------------------------------------------------
def openai_check(params: Params, api_key: str | None = None, timeout_s: float = 5.0) -> Check:
    """``GET <base_url>/models`` answers and lists ``vlm.openai.model``."""
    ep = params.vlm.openai

    def probe() -> str:
        import os

        import httpx

        key = api_key or os.environ.get("HOPCHAIN_VLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        url = ep.base_url.rstrip("/") + "/models"
        try:
            resp = httpx.get(url, headers={"Authorization": f"Bearer {key}"},
                             timeout=min(timeout_s, ep.timeout_s))
        except httpx.HTTPError as err:
            raise CheckFailed(f"no answer at {url}: {type(err).__name__}",
                              "start the server (vLLM/SGLang) or fix vlm.openai.base_url") from None
        if resp.status_code in (401, 403):
            raise CheckFailed(f"{url} refused the API key (HTTP {resp.status_code})",
                              "set HOPCHAIN_VLM_API_KEY to the server's key")
        if resp.status_code >= 400:
            raise CheckFailed(f"{url} answered HTTP {resp.status_code}",
                              "vlm.openai.base_url must end at the API root, e.g. http://host:8000/v1")
        try:
            served = [str(m["id"]) for m in resp.json().get("data", [])]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise CheckFailed(f"{url} did not answer an OpenAI model list",
                              "point vlm.openai.base_url at an OpenAI-compatible server") from None
        if ep.model not in served:
            raise CheckFailed(f"{ep.base_url} serves {', '.join(served) or 'no model'}, not {ep.model!r}",
                              f"set vlm.openai.model to a served id, or serve {ep.model!r} "
                              "with vLLM's --served-model-name")
        return f"{ep.base_url} serves {ep.model}"

    return Check("vlm endpoint", probe, imports=("httpx",))


def s3_check(params: Params, creds: Any, timeout_s: float = 5.0, origin: str = "") -> Check:
    """The endpoint answers, accepts the credentials, and has the platform's and DVC's buckets."""

    def probe() -> str:
        if creds is None:
            raise CheckFailed("no object-store credentials",
                              "set HOPCHAIN_S3_ENDPOINT, HOPCHAIN_S3_ACCESS_KEY and HOPCHAIN_S3_SECRET_KEY "
                              "(or the hopchain_s3 connection in Airflow), or start the local stack")
        from minio.error import S3Error

        from pipelines.store import ObjectStore

        buckets = list(dict.fromkeys([params.store.bucket, params.release.dvc_remote_bucket]))
        missing = []
        for bucket in buckets:
            store = ObjectStore(creds, bucket, timeout_s=timeout_s, retries=0)
            try:
                exists = store.client.bucket_exists(bucket)
            except S3Error as err:
                if err.code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"):
                    raise CheckFailed(f"{creds.url} refused the credentials ({err.code})",
                                      "check the access and secret key: HOPCHAIN_S3_ACCESS_KEY/SECRET_KEY, "
                                      "or the hopchain_s3 connection in Airflow") from None
                raise CheckFailed(f"{creds.url}: {err.code}: {err.message}") from None
            except Exception as err:  # noqa: BLE001 - urllib3/socket errors: the endpoint is not there
                raise CheckFailed(f"no answer at {creds.url} ({type(err).__name__})",
                                  "start the S3 server or fix the endpoint: HOPCHAIN_S3_ENDPOINT, or the "
                                  "hopchain_s3 connection in Airflow") from None
            if not exists:
                missing.append(bucket)
        if missing:
            raise CheckFailed(f"bucket(s) {', '.join(missing)} do not exist on {creds.url}",
                              "create them (mc mb / aws s3 mb) or set store.bucket / release.dvc_remote_bucket")
        return f"{creds.url}{origin}: credentials accepted, buckets {', '.join(buckets)} exist"

    return Check("s3", probe, imports=("minio", "urllib3"))


def label_studio_check(params: Params, creds: Any, timeout_s: float = 5.0, origin: str = "") -> Check:
    """The server answers, the token is accepted, and the project exists (or will be created)."""

    def probe() -> str:
        if creds is None:
            raise CheckFailed("no Label Studio credentials",
                              "set HOPCHAIN_LS_URL and HOPCHAIN_LS_TOKEN (or the hopchain_label_studio "
                              "connection in Airflow), or start the local stack")
        import httpx

        from pipelines.annotation.client import LabelStudioClient, LabelStudioError

        title = params.annotation.project_title
        with LabelStudioClient.from_credentials(creds, timeout_s=timeout_s, retries=0) as client:
            try:
                me = client.whoami()
                project = client.find_project(title)
            except LabelStudioError as err:
                if err.status_code in (401, 403):
                    raise CheckFailed(f"{creds.url} refused the API token (HTTP {err.status_code})",
                                      "use the legacy API token from the Label Studio account page: "
                                      "HOPCHAIN_LS_TOKEN, or the connection's password in Airflow") from None
                raise CheckFailed(f"{creds.url} answered HTTP {err.status_code}",
                                  "check the Label Studio URL and its server log") from None
            except httpx.HTTPError as err:
                raise CheckFailed(f"no answer at {creds.url} ({type(err).__name__})",
                                  "start Label Studio or fix HOPCHAIN_LS_URL / the connection's host") from None
        who = me.get("email") or me.get("username") or "?"
        if project is None:
            return f"{creds.url}{origin}: token of {who} accepted; project {title!r} will be created on the first push"
        return f"{creds.url}{origin}: token of {who} accepted; project {title!r} is #{project['id']}"

    return Check("label studio", probe, imports=("httpx", "label_studio_sdk"))


# -- putting it together ----------------------------------------------------------------------------
@dataclass
class Services:
    """Where the services are: credentials objects (or None when not configured) and where from."""

    s3: Any = None
    label_studio: Any = None
    s3_origin: str = ""
    label_studio_origin: str = ""
    extra: list[Check] = field(default_factory=list)


def profile_checks(params: Params, services: Services | None = None, *, models: bool = True,
                   s3: bool = True, label_studio: bool = True) -> list[Check]:
    """Every check the profile needs, in the order they are printed."""
    services = services or Services()
    checks: list[Check] = []
    if models:
        for key, ref in configured_models(params):
            checks.append(model_check(key, ref, single_file=key == "segment.sam2"))
            if ref.device.startswith("cuda"):
                checks.append(cuda_check(key, ref))
    if params.vlm.backend == "openai":
        checks.append(openai_check(params))
    if s3:
        checks.append(s3_check(params, services.s3, origin=services.s3_origin))
    if label_studio:
        checks.append(label_studio_check(params, services.label_studio, origin=services.label_studio_origin))
    return checks + services.extra


def summary_line(results: Sequence[CheckResult]) -> str:
    failed = [r.name for r in results if not r.ok]
    if not failed:
        return f"all {len(results)} checks passed"
    return f"{len(failed)} of {len(results)} checks failed: {', '.join(failed)}"
