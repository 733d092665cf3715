"""The supply chain is reproducible: what the platform installs and pulls is named by content, completely.

* every lock pins each requirement exactly and carries the sha256 of its artefacts, and every ``pip
  install`` of scripts/setup.sh and the Dockerfile runs in ``--require-hashes`` mode;
* every third-party module the code imports (``pipelines/``, ``plugins/``, ``dags/``, ``hopchain_demo/``,
  lazy imports inside functions included) comes from a distribution in ``requirements/lock.txt``, at the
  version installed here, and every feature's requirements (pyproject's dependencies and extras,
  ``requirements/pipeline.in``) are satisfied by the lock (``sam2`` was missing: the GPU image lacked it);
* every image reference under docker/ is ``name:tag@sha256:<digest>`` or listed, with a reason, in
  ``docker/images-unpinned.txt``;
* components shipped twice agree: Label Studio in compose and in the test lock, Airflow in the
  Dockerfile's base image and in the lock, Python in that image and in pyproject.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions, requires, version
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from packaging.requirements import Requirement

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
REQ = REPO / "requirements"
LOCKS = sorted([*REQ.glob("*.lock"), REQ / "lock.txt"])
MAIN_LOCK = REQ / "lock.txt"
SOURCES = ("pipelines", "plugins", "dags", "hopchain_demo")
FIRST_PARTY = {"pipelines", "expectations", "hopchain_demo", "hopchain_airflow", "hopchain_plugin", "tests"}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+?)(\s|$)")
HASH = re.compile(r"--hash=sha256:(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_entries(path: Path) -> list[str]:
    """The requirement entries of a lock (continuation lines joined, comments and blanks dropped)."""
    text = path.read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@cache
def locked(path: Path = MAIN_LOCK) -> dict[str, str]:
    """``{canonical name: version}`` pinned by a lock."""
    out: dict[str, str] = {}
    for entry in lock_entries(path):
        match = PIN.match(entry)
        assert match, f"{path.name}: not an exact pin: {entry[:80]}"
        out[canonical(match.group(1))] = match.group(2)
    return out


def load_script(name: str) -> ModuleType:
    """A module of scripts/ (not a package) imported by path."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# -- hashed locks, hash-checked installs --------------------------------------------------------------
@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_lock_entry_is_an_exact_pin_with_sha256_hashes(lock: Path) -> None:
    names: list[str] = []
    for entry in lock_entries(lock):
        match = PIN.match(entry)
        assert match, f"{lock.name}: not an exact pin: {entry[:80]}"
        hashes = HASH.findall(entry)
        assert hashes, f"{lock.name}: {match.group(0).strip()} has no --hash (refresh: scripts/lock-hashes)"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{lock.name}: malformed hash in {entry[:80]}"
        names.append(canonical(match.group(1)))
    assert len(names) == len(set(names)), f"{lock.name}: a package is pinned twice"


def _pip_installs(text: str) -> list[str]:
    """Each ``pip install`` command of a shell script or Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line for line in joined.splitlines() if not line.lstrip().startswith("#")]
    commands = [part.strip() for line in lines for part in line.split("&&")]
    return [c for c in commands if re.search(r"\bpip\"?\s+(install|\"\$\{HASHED\[@\]\}\")", c)]


def _is_project_install(command: str) -> bool:
    """The project's own checkout: nothing to hash, but nothing fetched either (no deps, no build env)."""
    return "--no-deps" in command and "--no-build-isolation" in command and (
        command.endswith("-e .") or command.endswith("/opt/hopchain/src"))


@pytest.mark.parametrize("path", ["scripts/setup.sh", "docker/airflow/Dockerfile"])
def test_every_pip_install_checks_hashes(path: str) -> None:
    text = (REPO / path).read_text()
    installs = _pip_installs(text)
    assert len(installs) == {"scripts/setup.sh": 8, "docker/airflow/Dockerfile": 4}[path], installs
    hashed = "HASHED=(install -q --require-hashes)" in text
    for command in installs:
        if _is_project_install(command):
            continue
        assert "--require-hashes" in command or (hashed and '"${HASHED[@]}"' in command), command
        assert re.search(r"-r\s+\S+", command), f"installs something not from a lock: {command}"
        assert "--upgrade" not in command, f"an unpinned upgrade: {command}"


def test_sam2_is_locked_and_installed_from_the_lock_by_setup_and_the_gpu_image() -> None:
    assert locked()["sam2"] == "1.1.0"
    setup = (REPO / "scripts" / "setup.sh").read_text()
    dockerfile = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    assert "sam2==1.1.0" not in setup, "setup installs sam2 from the lock, not from a literal pin"
    assert "grep '^sam2==' requirements/lock.txt" in setup
    assert "grep -i '^sam2==' /opt/hopchain/requirements/lock.txt > /opt/hopchain/requirements/sam2.txt" in dockerfile
    assert "import torch, torchvision, sam2.build_sam" in dockerfile


# -- every import from the lock -------------------------------------------------------------------
def _first_party(name: str) -> bool:
    return name in FIRST_PARTY or any((REPO / root / f"{name}.py").exists() for root in SOURCES)


def _optional(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """An import inside ``try: ... except ImportError`` declares itself optional (e.g. wtforms)."""
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.Try) and any(
            isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError") for h in node.handlers
        ):
            return True
    return False


@cache
def providers() -> dict[str, frozenset[str]]:
    """``{top-level module: {canonical distribution, ...}}`` of this environment (the venv built from the lock)."""
    return {module: frozenset(canonical(d) for d in dists) for module, dists in packages_distributions().items()}


@cache
def imported_modules() -> dict[str, set[str]]:
    """``{top-level module: {file, ...}}`` of every third-party import the shipped code makes."""
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in sorted((REPO / root).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in sys.stdlib_module_names or _first_party(top) or _optional(node, parents):
                        continue
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def unlocked_imports(modules: dict[str, set[str]], lock: dict[str, str]) -> list[str]:
    """One line per imported module that no locked distribution (at the installed version) provides."""
    problems: list[str] = []
    for module, files in sorted(modules.items()):
        dists = providers().get(module, frozenset())
        if not dists:
            problems.append(f"{module} (imported by {sorted(files)[0]}): not installed, so not from the lock")
            continue
        in_lock = dists & set(lock)
        if not in_lock:
            problems.append(f"{module} (imported by {sorted(files)[0]}): {sorted(dists)} not in the lock")
            continue
        for dist in sorted(in_lock):
            if version(dist).split("+")[0] != lock[dist]:
                problems.append(f"{module}: installed {dist} {version(dist)} but the lock pins {lock[dist]}")
    return problems


def test_every_import_the_code_makes_comes_from_a_locked_distribution() -> None:
    modules = imported_modules()
    assert {"sam2", "torch", "airflow", "label_studio_sdk", "pycocotools"} <= set(modules)
    assert "wtforms" not in modules, "imports under `except ImportError` are optional"
    assert unlocked_imports(modules, locked()) == []


def test_the_import_check_names_a_module_missing_from_the_lock() -> None:
    """The finding as it was: sam2 imported by the segment stage, installed, but not in the lock."""
    lock = {name: ver for name, ver in locked().items() if name != "sam2"}
    problems = unlocked_imports(imported_modules(), lock)
    assert [p.split(" ")[0] for p in problems] == ["sam2"], problems
    assert "not in the lock" in problems[0] and "pipelines/segment/backends.py" in problems[0]


def _features() -> dict[str, list[str]]:
    """Each feature of the package and its requirements: core, every extra, the platform (pipeline.in)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    features = {"core (pyproject dependencies)": list(project["dependencies"])}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        features[f"extra [{extra}]"] = list(reqs)
    pipeline = (REQ / "pipeline.in").read_text().splitlines()
    features["platform (requirements/pipeline.in)"] = [
        line.split("#")[0].strip() for line in pipeline if line.split("#")[0].strip()]
    return features


@pytest.mark.parametrize("feature", sorted(_features()))
def test_each_feature_is_satisfied_by_the_lock_and_importable_from_it(feature: str) -> None:
    lock = locked()
    for line in _features()[feature]:
        req = Requirement(line)
        name = canonical(req.name)
        assert name in lock, f"{feature}: {req.name} is not in requirements/lock.txt"
        assert req.specifier.contains(lock[name], prereleases=True), f"{feature}: {line} vs locked {lock[name]}"
        for extra in req.extras:  # dvc[s3]: the extra's own requirements are locked too
            for dep in requires(req.name) or []:
                dep_req = Requirement(dep)
                if dep_req.marker and dep_req.marker.evaluate({"extra": extra}) and not dep_req.marker.evaluate(
                        {"extra": ""}):
                    assert canonical(dep_req.name) in lock, f"{feature}: {req.name}[{extra}] needs {dep_req.name}"
        assert version(req.name).split("+")[0] == lock[name], f"{feature}: {req.name} installed is not the locked one"
        modules = [m for m, dists in providers().items() if name in dists]
        if not modules:  # a meta-package (apache-airflow): what it stands for must be locked instead
            deps = [Requirement(d) for d in requires(req.name) or []]
            missing = [d.name for d in deps if (not d.marker or d.marker.evaluate()) and canonical(d.name) not in lock]
            assert not missing, f"{feature}: {req.name} needs {missing}, not in the lock"
            continue
        assert any(importlib.util.find_spec(m) is not None for m in modules), f"{feature}: {req.name} not importable"


# -- images by digest ------------------------------------------------------------------------------
def test_every_image_reference_is_digest_pinned_or_an_allowed_exception() -> None:
    pin_images = load_script("pin_images")
    files = pin_images.default_files()
    assert {p.name for p in files} == {"compose.yaml", "Dockerfile"}
    allowed = pin_images.read_allowance()
    refs = [m.group(2) for path in files for _, m in pin_images.image_refs(path)]
    assert len(refs) >= 9, refs  # 7 compose images, the Dockerfile's syntax frontend and its base image
    for ref in refs:
        assert pin_images.is_digest_pinned(ref) or ref in allowed, (
            f"{ref} is neither name:tag@sha256:<digest> nor in docker/images-unpinned.txt (run scripts/pin-images)")
    assert all(allowed.values()), "every allowance states its reason"
    stale = set(allowed) - set(refs)
    assert not stale, f"allowed but no longer used (remove from docker/images-unpinned.txt): {sorted(stale)}"


def test_built_images_are_the_only_permanent_exceptions() -> None:
    allowed = load_script("pin_images").read_allowance()
    for ref, reason in allowed.items():
        assert ref.startswith("hopchain/") or "pending scripts/pin_images.py" in reason, (ref, reason)


# -- one version of each component ---------------------------------------------------------------
def _compose_image(service: str) -> str:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())
    return str(compose["services"][service]["image"])


def _tag(ref: str) -> str:
    return ref.split("@")[0].rpartition(":")[2]


def test_label_studio_is_one_version_in_production_and_in_the_tests() -> None:
    assert _tag(_compose_image("label-studio")) == locked(REQ / "labelstudio.lock")["label-studio"]


def test_airflow_and_python_are_one_version_in_the_image_and_the_lock() -> None:
    text = (REPO / "docker" / "airflow" / "Dockerfile").read_text()
    base = re.search(r"^ARG AIRFLOW_BASE_IMAGE=(\S+)", text, re.M)
    assert base, "the Dockerfile names its base image in ARG AIRFLOW_BASE_IMAGE"
    tag = _tag(base.group(1))
    airflow, _, python = tag.partition("-python")
    assert airflow == locked()["apache-airflow"] == locked()["apache-airflow-core"]
    requires = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Requirement(f"python{requires}").specifier.contains(f"{python}.0"), (python, requires)
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == python

