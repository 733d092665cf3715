"""The two tools that keep the supply chain pinned, against fakes of what they talk to:

* ``scripts/pin_images.py`` against a registry on 127.0.0.1 that speaks the registry HTTP API v2 (anonymous
  bearer-token challenge, manifests by tag, ``Docker-Content-Digest``): it pins by the digest of the bytes
  it received, refuses a registry whose header disagrees, and rewrites only image references;
* ``scripts/lock_hashes.py`` with a stand-in for ``uv`` (same output format): every pin gets the index's
  hashes, a local build on disk adds its own, comments and order are kept, a rerun changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.test_supply_chain import load_script

pytestmark = pytest.mark.unit

MANIFESTS = {  # repository, tag -> manifest bytes the fake registry serves
    ("library/postgres", "17.6-bookworm"): b'{"schemaVersion":2,"manifests":[{"platform":"linux/amd64"}]}',
    ("heartexlabs/label-studio", "1.23.2"): b'{"schemaVersion":2,"manifests":[{"platform":"ls"}]}',
    ("apache/airflow", "3.3.2-python3.11"): b'{"schemaVersion":2,"manifests":[{"platform":"af"}]}',
    ("docker/dockerfile", "1.7"): b'{"schemaVersion":2,"manifests":[{"platform":"df"}]}',
    ("evil/tampered", "1"): b'{"schemaVersion":2}',
}
TOKEN = "anon-pull-token"


def digest_of(repo: str, tag: str) -> str:
    return "sha256:" + hashlib.sha256(MANIFESTS[(repo, tag)]).hexdigest()


class FakeRegistry(BaseHTTPRequestHandler):
    """Registry API v2, just enough: 401 + challenge, /token, manifests by tag behind the token."""

    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        host = f"http://127.0.0.1:{self.server.server_address[1]}"
        if self.path.startswith("/token?"):
            return self._answer(200, json.dumps({"token": TOKEN}).encode())
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="{host}/token",service="fake",scope="repository:x:pull"'
            return self._answer(401, b"{}", {"WWW-Authenticate": challenge})
        repo, _, tag = self.path.removeprefix("/v2/").partition("/manifests/")
        body = MANIFESTS.get((repo, tag))
        if body is None:
            return self._answer(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
        announced = "sha256:" + "0" * 64 if repo == "evil/tampered" else digest_of(repo, tag)
        return self._answer(200, body, {"Docker-Content-Digest": announced})

    def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def registry() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeRegistry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pin_images() -> ModuleType:
    return load_script("pin_images")


COMPOSE = """\
x-airflow-common: &airflow-common
  image: hopchain/airflow:${HOPCHAIN_IMAGE_TAG:-0.1.0}
services:
  postgres:
    image: postgres:17.6-bookworm
    environment:
      POSTGRES_USER: postgres  # image: not-an-image:1 stays a comment
  label-studio:
    image: "heartexlabs/label-studio:1.23.2@sha256:%s"
    command: ["label-studio", "start"]
""" % ("1" * 64)

DOCKERFILE = """\
# syntax=docker/dockerfile:1.7
ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_BASE_IMAGE} AS airflow
RUN python -c "import sys; \\
from importlib.metadata import version"
FROM airflow AS gpu-worker
"""


def test_pins_compose_image_lines_by_the_served_digest_and_nothing_else(
    pin_images: ModuleType, registry: str, tmp_path: Path,
) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(COMPOSE)
    changed = pin_images.pin_file(path, lambda ref: pin_images.resolve(ref, base=registry))
    pg = f"postgres:17.6-bookworm@{digest_of('library/postgres', '17.6-bookworm')}"
    ls = f"heartexlabs/label-studio:1.23.2@{digest_of('heartexlabs/label-studio', '1.23.2')}"
    assert changed == [pg, ls]  # the stale digest of label-studio is refreshed
    after = path.read_text().splitlines()
    before = COMPOSE.splitlines()
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [4, 8]
    assert after[4] == f"    image: {pg}" and after[8] == f'    image: "{ls}"'
    assert pin_images.unpinned([path]) == [(path, "hopchain/airflow:${HOPCHAIN_IMAGE_TAG:-0.1.0}")]
    assert pin_images.pin_file(path, lambda ref: pin_images.resolve(ref, base=registry)) == []  # a rerun: no change


def test_pins_dockerfile_frontend_and_base_image_but_not_stages_or_continued_lines(
    pin_images: ModuleType, registry: str, tmp_path: Path,
) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(DOCKERFILE)
    assert [m.group(2) for _, m in pin_images.image_refs(path)] == [
        "docker/dockerfile:1.7", "apache/airflow:3.3.2-python3.11"]
    pin_images.pin_file(path, lambda ref: pin_images.resolve(ref, base=registry))
    lines = path.read_text().splitlines()
    assert lines[0] == f"# syntax=docker/dockerfile:1.7@{digest_of('docker/dockerfile', '1.7')}"
    airflow = digest_of("apache/airflow", "3.3.2-python3.11")
    assert lines[1] == f"ARG AIRFLOW_BASE_IMAGE=apache/airflow:3.3.2-python3.11@{airflow}"
    assert lines[2:] == DOCKERFILE.splitlines()[2:]
    assert pin_images.unpinned([path]) == []


def test_a_registry_whose_digest_header_disagrees_with_its_bytes_is_refused(
    pin_images: ModuleType, registry: str,
) -> None:
    ref = pin_images.parse_ref("evil/tampered:1")
    with pytest.raises(pin_images.PinError, match="body hashes to sha256:.*registry says sha256:0000"):
        pin_images.resolve(ref, base=registry)


def test_an_unknown_tag_is_a_one_line_error_and_the_file_is_left_as_it_was(
    pin_images: ModuleType, registry: str, tmp_path: Path,
) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  a:\n    image: postgres:99-nope\n")
    with pytest.raises(pin_images.PinError, match=r"library/postgres:99-nope: registry answered 404"):
        pin_images.pin_file(path, lambda ref: pin_images.resolve(ref, base=registry))
    assert path.read_text() == "services:\n  a:\n    image: postgres:99-nope\n"


@pytest.mark.parametrize(("ref", "registry", "repository", "tag", "short"), [
    ("postgres:17.6-bookworm", "docker.io", "library/postgres", "17.6-bookworm", "postgres:17.6-bookworm"),
    ("minio/mc:RELEASE.2025-08-13T08-35-41Z", "docker.io", "minio/mc", "RELEASE.2025-08-13T08-35-41Z",
     "minio/mc:RELEASE.2025-08-13T08-35-41Z"),
    ("ghcr.io/org/app:1.2@sha256:" + "a" * 64, "ghcr.io", "org/app", "1.2", "ghcr.io/org/app:1.2"),
    ("localhost:5000/app:dev", "localhost:5000", "app", "dev", "localhost:5000/app:dev"),
])
def test_references_parse_like_docker_reads_them(
    pin_images: ModuleType, ref: str, registry: str, repository: str, tag: str, short: str,
) -> None:
    parsed = pin_images.parse_ref(ref)
    assert (parsed.registry, parsed.repository, parsed.tag) == (registry, repository, tag)
    assert parsed.pinned("sha256:" + "b" * 64) == f"{short}@sha256:{'b' * 64}"


@pytest.mark.parametrize("ref", ["${AIRFLOW_BASE_IMAGE}", "hopchain/airflow:${TAG:-1}", "postgres", "postgres@sha256:"
                                 + "c" * 64])
def test_references_without_a_literal_tag_are_not_pinnable(pin_images: ModuleType, ref: str) -> None:
    assert pin_images.parse_ref(ref) is None
    assert not pin_images.is_digest_pinned(ref)


def test_only_a_full_sha256_counts_as_pinned(pin_images: ModuleType) -> None:
    assert pin_images.is_digest_pinned("redis:7.4.5-bookworm@sha256:" + "d" * 64)
    assert not pin_images.is_digest_pinned("redis:7.4.5-bookworm@sha256:" + "d" * 63)
    assert not pin_images.is_digest_pinned("redis:7.4.5-bookworm")


# -- lock_hashes ---------------------------------------------------------------------------------
UV_OUTPUT = """\
requests==2.34.2 \\
    --hash=sha256:{a} \\
    --hash=sha256:{b}
""".format(a="a" * 64, b="b" * 64)


@pytest.fixture
def fake_uv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An executable that answers ``uv pip compile`` with uv's output format and logs its arguments."""
    script = tmp_path / "uv"
    (tmp_path / "uv-output.txt").write_text(UV_OUTPUT)
    script.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/uv-args.txt\ncat {tmp_path}/uv-output.txt\n')
    script.chmod(0o755)
    monkeypatch.setenv("UV", str(script))
    return str(script)


def test_lock_hashes_takes_the_index_hashes_and_a_local_build_from_disk_keeping_comments(fake_uv: str, tmp_path: Path) -> None:
    lock_hashes = load_script("lock_hashes")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"cpu build")
    (wheels / "torch-2.12.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"other release")
    lock = tmp_path / "x.lock"
    lock.write_text("# header kept\nrequests==2.34.2\ntorch==2.13.0+cpu --hash=sha256:" + "e" * 64 + "\n")
    assert lock_hashes.main([str(lock), "--local-wheels", str(wheels)]) == 0
    local = hashlib.sha256(b"cpu build").hexdigest()
    assert lock.read_text() == (
        "# header kept\n"
        f"requests==2.34.2 --hash=sha256:{'a' * 64} --hash=sha256:{'b' * 64}\n"
        f"torch==2.13.0+cpu --hash=sha256:{local}\n"
    )
    args = (tmp_path / "uv-args.txt").read_text()
    assert "--no-deps --generate-hashes" in args and "--index-url https://pypi.org/simple" in args
    assert "torch" not in (tmp_path / "uv-args.txt").read_text()  # the local build is not asked of the index
    first = lock.read_text()
    lock_hashes.main([str(lock), "--local-wheels", str(wheels)])
    assert lock.read_text() == first  # idempotent


@pytest.mark.parametrize(("pin", "error"), [
    ("not-on-pypi==1.0", "not-on-pypi==1.0 has no artefact on the index"),
    ("torch==9.9.9+cpu", r"torch==9.9.9\+cpu has no artefact in --local-wheels"),
])
def test_lock_hashes_refuses_a_pin_it_cannot_hash(fake_uv: str, tmp_path: Path, pin: str, error: str) -> None:
    lock_hashes = load_script("lock_hashes")
    lock = tmp_path / "x.lock"
    lock.write_text(f"{pin}\n")
    with pytest.raises(SystemExit, match=error):
        lock_hashes.main([str(lock)])
    assert lock.read_text() == f"{pin}\n"

