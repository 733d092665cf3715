"""params.yaml → one validated Params object; unknown keys refused with their path."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.config import ConfigError, Params, load_params, params_from_dict, profile_names

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_repository_params_and_every_profile_validate() -> None:
    base = load_params(REPO / "params.yaml")
    assert isinstance(base, Params) and base.profile == "base"
    names = profile_names(REPO / "params.yaml")
    assert {"demo", "gpu"} <= set(names)
    for name in names:
        p = load_params(REPO / "params.yaml", name)
        assert p.profile == name


def test_profile_is_deep_merged_over_base() -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    gpu = params_from_dict(raw, "gpu")
    assert gpu.vlm.backend == "qwen3vl" and gpu.detect.backend == "vlm" and gpu.segment.backend == "sam3"
    # keys the profile does not mention keep their base values
    assert gpu.segment.min_area == 32 and gpu.questions.min_score == 0.5
    demo = params_from_dict(raw, "demo")
    assert demo.annotation.simulated.enabled and not gpu.annotation.simulated.enabled


def test_unknown_key_is_refused_naming_its_path(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text("questions:\n  per_imgae: 3\n")
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert "questions.per_imgae: unknown key" in str(err.value)
    assert str(f) in str(err.value)


def test_invalid_value_and_unknown_profile_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"questions.min_hops"):
        params_from_dict({"questions": {"min_hops": 2}})
    with pytest.raises(ConfigError, match="unknown profile 'nope'"):
        params_from_dict({"profiles": {"demo": {}}}, "nope")
    with pytest.raises(ConfigError, match="min_hops must be <= "):
        params_from_dict({"questions": {"min_hops": 6, "max_hops": 3}})


def test_params_hold_no_secret_fields() -> None:
    text = (REPO / "params.yaml").read_text().lower()
    for word in ("password:", "secret_key:", "token:", "access_key:"):
        assert word not in text


@pytest.mark.parametrize(("override", "expected"), [
    ({"questions": {"writer": "vlm"}},
     "questions.writer: needs a model, but vlm.backend is 'none'"),
    ({"questions": {"difficulty": {"enabled": True}}},
     "questions.difficulty.enabled: needs a model, but vlm.backend is 'none'"),
    ({"detect": {"backend": "vlm"}}, "detect.backend: needs a model, but vlm.backend is 'none'"),
    ({"vlm": {"backend": "qwen3vl"}}, "vlm.qwen3vl.model: empty"),
    ({"vlm": {"backend": "openai", "openai": {"model": "m"}}}, "vlm.openai.base_url: empty"),
    ({"segment": {"backend": "sam3"}}, "segment.sam3.model: empty"),
])
def test_a_configuration_that_cannot_run_is_refused_at_load_naming_its_key(
        tmp_path: Path, override: dict, expected: str) -> None:
    """It validates key by key, but would fail at run time: refused when loaded, with the key path."""
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump(override))
    with pytest.raises(ConfigError) as err:
        load_params(f)
    assert any(line.strip().startswith(expected) for line in str(err.value).splitlines()), str(err.value)


def test_one_vlm_serves_detect_the_writer_and_the_solver(tmp_path: Path) -> None:
    f = tmp_path / "params.yaml"
    f.write_text(yaml.safe_dump({
        "vlm": {"backend": "openai", "openai": {"base_url": "http://127.0.0.1:9", "model": "m", "concurrency": 5}},
        "detect": {"backend": "vlm"}, "questions": {"writer": "vlm", "difficulty": {"enabled": True}}}))
    params = load_params(f)
    assert params.vlm.batch_size == 5  # the endpoint's requests in flight are the detect batch


# -- the profile belongs to the deployment (issue 26) ------------------------------------------------
FORBIDDING = {"HOPCHAIN_SIMULATED_ANNOTATORS": "forbid", "HOPCHAIN_PROFILE": "gpu"}  # what production sets


def test_only_an_explicit_allow_lets_a_deployment_run_simulated_annotators() -> None:
    from pipelines.config import simulated_allowed

    assert simulated_allowed({"HOPCHAIN_SIMULATED_ANNOTATORS": "allow"})
    for env in ({}, {"HOPCHAIN_SIMULATED_ANNOTATORS": ""}, {"HOPCHAIN_SIMULATED_ANNOTATORS": "yes"},
                {"HOPCHAIN_SIMULATED_ANNOTATORS": "1"}, FORBIDDING):
        assert not simulated_allowed(env), env


def test_a_deployment_that_allows_simulation_runs_the_demo_profile() -> None:
    from pipelines.config import check_deployment

    demo = load_params(REPO / "params.yaml", "demo")
    assert demo.annotation.simulated.enabled
    check_deployment(demo, "demo", {"HOPCHAIN_SIMULATED_ANNOTATORS": "allow", "HOPCHAIN_PROFILE": "demo"})
    check_deployment(demo, "demo", {"HOPCHAIN_SIMULATED_ANNOTATORS": "allow"})  # a base stack, run conf demo


def test_a_run_conf_profile_that_turns_on_simulation_is_refused_where_the_deployment_forbids_it() -> None:
    from pipelines.config import check_deployment

    demo = load_params(REPO / "params.yaml", "demo")
    with pytest.raises(ConfigError) as err:
        check_deployment(demo, "demo", FORBIDDING)
    msg = str(err.value)
    assert "\n" not in msg  # one line
    assert msg.startswith("profile 'demo' from the run's conf turns on simulated annotators "
                          "(annotation.simulated.enabled), which this deployment (profile 'gpu') forbids "
                          "(HOPCHAIN_SIMULATED_ANNOTATORS is forbid)")
    with pytest.raises(ConfigError, match=r"HOPCHAIN_SIMULATED_ANNOTATORS is unset"):  # default: forbidden
        check_deployment(demo, "demo", {})


def test_the_deployment_profile_itself_turning_on_simulation_is_refused_where_it_forbids_it() -> None:
    from pipelines.config import check_deployment

    demo = load_params(REPO / "params.yaml", "demo")
    for env in ({"HOPCHAIN_PROFILE": "demo", "HOPCHAIN_SIMULATED_ANNOTATORS": "forbid"}, {"HOPCHAIN_PROFILE": "demo"}):
        with pytest.raises(ConfigError, match=r"^profile 'demo' turns on simulated annotators "
                                              r"\(annotation.simulated.enabled\), which this deployment forbids "
                                              r"\(HOPCHAIN_SIMULATED_ANNOTATORS is (forbid|unset);"):
            check_deployment(demo, None, env)
        with pytest.raises(ConfigError, match="which this deployment forbids"):
            check_deployment(demo, "demo", env)  # the run conf naming the deployment's own profile


def test_profiles_with_people_run_in_any_deployment() -> None:
    from pipelines.config import check_deployment

    for name in ("base", "gpu"):
        params = load_params(REPO / "params.yaml", name)
        assert not params.annotation.simulated.enabled
        check_deployment(params, name, FORBIDDING)  # a run conf switching to a people profile is fine
        check_deployment(params, None, {})
