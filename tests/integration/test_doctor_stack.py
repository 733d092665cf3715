"""``hopchain doctor`` against the real local stack (SeaweedFS S3, Label Studio, Airflow on loopback):
the demo profile passes every check; a refused Label Studio token and refused S3 keys each fail their
check within 10 s with the fix; the preflight's ``gpu`` pool check finds the pool the stack provisions."""

from __future__ import annotations

import time

import pytest

from pipelines.cli import main

pytestmark = [pytest.mark.integration]


def _use_stack(monkeypatch: pytest.MonkeyPatch, stack, *, ls_token: str | None = None,
               s3_secret: str | None = None) -> None:
    from pipelines.stack.services import read_secret_file

    s3 = stack.s3.credentials()
    ls = read_secret_file(stack.labelstudio.credentials_file())
    monkeypatch.setenv("HOPCHAIN_S3_ENDPOINT", s3["endpoint"])
    monkeypatch.setenv("HOPCHAIN_S3_ACCESS_KEY", s3["access_key"])
    monkeypatch.setenv("HOPCHAIN_S3_SECRET_KEY", s3_secret or s3["secret_key"])
    monkeypatch.setenv("HOPCHAIN_LS_URL", stack.labelstudio.url())
    monkeypatch.setenv("HOPCHAIN_LS_TOKEN", ls_token or ls["token"])


def _doctor(capsys: pytest.CaptureFixture) -> tuple[int, list[str], str, float]:
    t0 = time.monotonic()
    code = main(["--profile", "demo", "doctor"])
    took = time.monotonic() - t0
    out = capsys.readouterr()
    with capsys.disabled():  # the lines and their timings go into the test log
        print(f"\n{out.out}{out.err}(doctor took {took:.1f} s)")
    return code, out.out.strip().splitlines()[1:], out.err, took


def test_doctor_passes_every_check_on_the_demo_stack(local_stack, monkeypatch, capsys) -> None:
    _use_stack(monkeypatch, local_stack)
    code, lines, err, took = _doctor(capsys)
    assert code == 0, "\n".join(lines) + err
    assert [ln.split(":")[0] for ln in lines] == ["ok      s3", "ok      label studio", "all 2 checks passed"]
    assert "buckets hopchain, hopchain-dvc exist" in lines[0]
    assert "token of admin@hopchain.local accepted" in lines[1]
    assert took < 10


def test_a_wrong_label_studio_token_fails_with_its_fix(local_stack, monkeypatch, capsys) -> None:
    _use_stack(monkeypatch, local_stack, ls_token="0" * 40)
    code, lines, err, took = _doctor(capsys)
    assert code == 1 and took < 10
    assert lines[0].startswith("ok      s3")
    assert lines[1].startswith("FAILED  label studio: ") and "refused the API token (HTTP 401)" in lines[1]
    assert "HOPCHAIN_LS_TOKEN" in lines[1]
    assert "1 of 2 checks failed: label studio" in err


def test_refused_s3_keys_fail_with_their_fix(local_stack, monkeypatch, capsys) -> None:
    _use_stack(monkeypatch, local_stack, s3_secret="wrong-secret-key")
    code, lines, err, took = _doctor(capsys)
    assert code == 1 and took < 10
    assert lines[0].startswith("FAILED  s3: ") and "refused the credentials (" in lines[0]
    assert "HOPCHAIN_S3_ACCESS_KEY" in lines[0]


def test_the_preflight_pool_check_finds_the_gpu_pool(local_stack, monkeypatch) -> None:
    from hopchain_airflow.runtime import _pool_check
    from pipelines.ops.doctor import run_check

    for k, v in local_stack.airflow.env().items():
        monkeypatch.setenv(k, v)
    res = run_check(_pool_check(timeout_s=60))  # the airflow CLI starts slowly on a loaded 2-core machine
    assert res.ok and res.detail.startswith("pool 'gpu' exists"), res.line()
    print(res.line())
