"""Pin every container image the deployment pulls to its content digest (``name:tag@sha256:...``).

Why: a tag is a pointer the publisher (or whoever holds their registry credentials) can move; a digest
names the bytes. With ``name:tag@sha256:<d>`` Docker pulls exactly ``<d>`` and the tag stays only for
people to read. Run this where the registries are reachable (the project's CI and development machines
reach only PyPI, Debian and npm), review the diff, commit it::

    python scripts/pin_images.py            # rewrite docker/compose.yaml and docker/**/Dockerfile
    python scripts/pin_images.py --check    # exit 1 if a reference is neither pinned nor allowed

What it rewrites: ``image:`` lines of compose files (nothing else in them), ``FROM`` lines, ``ARG
*IMAGE*=`` defaults and the ``# syntax=`` frontend of Dockerfiles. A reference already pinned is resolved
again and its digest replaced (a refresh). References that cannot be pinned here, images this
project builds itself (``hopchain/...:${HOPCHAIN_IMAGE_TAG}``) and ``${VAR}`` placeholders, are left as
they are; they must be listed, with a reason, in ``docker/images-unpinned.txt``.

How a digest is obtained: the registry HTTP API v2 (``GET /v2/<repo>/manifests/<tag>``, anonymous
bearer token from the ``WWW-Authenticate`` challenge), asking for the multi-platform index first. The
digest is the sha256 of the manifest bytes received, checked against the registry's own
``Docker-Content-Digest`` header; a mismatch stops the run. Nothing is ever guessed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
ALLOWANCE = DOCKER / "images-unpinned.txt"
ACCEPT = ", ".join([
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# One image reference per matching line; group 2 is the reference.
COMPOSE_IMAGE = re.compile(r"^(\s*image:\s*['\"]?)([^\s'\"#]+)(.*)$")
DOCKERFILE_REFS = [
    re.compile(r"^(FROM\s+(?:--platform=\S+\s+)?)(\S+)(.*)$", re.IGNORECASE),
    re.compile(r"^(ARG\s+[A-Z0-9_]*IMAGE[A-Z0-9_]*=)(\S+)(.*)$"),
    re.compile(r"^(#\s*syntax=)(\S+)(.*)$"),
]
STAGE = re.compile(r"^FROM\s+.*\s+AS\s+(\S+)\s*$", re.IGNORECASE)


class PinError(RuntimeError):
    """A reference could not be resolved to a digest; the message is one line for the operator."""


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference: ``registry/repository:tag@digest`` (``docker.io`` and ``library/`` implied)."""

    registry: str
    repository: str
    tag: str
    digest: str | None

    def pinned(self, digest: str) -> str:
        """The reference as written for people (Docker Hub short form kept) with ``digest`` attached."""
        name = self.repository
        if self.registry == "docker.io":
            name = name.removeprefix("library/")
        else:
            name = f"{self.registry}/{name}"
        return f"{name}:{self.tag}@{digest}"


def parse_ref(ref: str) -> ImageRef | None:
    """``ref`` parsed, or None when it cannot be pinned as written (a ``${VAR}``, no tag)."""
    if "$" in ref:
        return None
    name, _, digest = ref.partition("@")
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = "docker.io", name
    path, sep, tag = path.rpartition(":") if ":" in path else (path, "", "")
    if not sep or not tag:
        return None
    if registry == "docker.io" and "/" not in path:
        path = f"library/{path}"
    return ImageRef(registry, path, tag, digest or None)


def is_digest_pinned(ref: str) -> bool:
    """True when ``ref`` names its content: a tag and ``@sha256:<64 hex>``."""
    parsed = parse_ref(ref)
    return parsed is not None and parsed.digest is not None and bool(DIGEST.match(parsed.digest))


def registry_base(registry: str) -> str:
    """The API endpoint of ``registry`` (Docker Hub's API lives on another host than its name)."""
    return "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"


Fetch = Callable[[urllib.request.Request], tuple[int, dict[str, str], bytes]]


def http_fetch(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange: status, headers (lower-case names), body. 4xx/5xx are answers, not errors."""
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def bearer_token(challenge: str, fetch: Fetch) -> str:
    """An anonymous pull token for a ``Bearer realm=...,service=...,scope=...`` challenge."""
    params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    realm = params.pop("realm", "")
    if not challenge.lower().startswith("bearer") or not realm:
        raise PinError(f"unsupported registry auth challenge: {challenge!r}")
    status, _, body = fetch(urllib.request.Request(f"{realm}?{urllib.parse.urlencode(params)}"))
    if status != 200:
        raise PinError(f"token endpoint {realm} answered {status}")
    data = json.loads(body)
    token = data.get("token") or data.get("access_token")
    if not token:
        raise PinError(f"token endpoint {realm} returned no token")
    return str(token)


def resolve(ref: ImageRef, fetch: Fetch = http_fetch, base: str | None = None) -> str:
    """The digest the registry serves for ``ref``'s tag, verified against the bytes received."""
    url = f"{base or registry_base(ref.registry)}/v2/{ref.repository}/manifests/{ref.tag}"
    headers = {"Accept": ACCEPT}
    status, head, body = fetch(urllib.request.Request(url, headers=headers))
    if status == 401 and "www-authenticate" in head:
        headers["Authorization"] = f"Bearer {bearer_token(head['www-authenticate'], fetch)}"
        status, head, body = fetch(urllib.request.Request(url, headers=headers))
    if status != 200:
        raise PinError(f"{ref.repository}:{ref.tag}: registry answered {status} for {url}")
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    announced = head.get("docker-content-digest")
    if announced and announced != digest:
        raise PinError(f"{ref.repository}:{ref.tag}: body hashes to {digest}, registry says {announced}")
    return digest


def image_refs(path: Path) -> Iterator[tuple[int, re.Match[str]]]:
    """(line number, match) of every image reference in a compose file or a Dockerfile."""
    compose = path.suffix in (".yaml", ".yml")
    text = path.read_text()
    # Not references of their own: an earlier build stage, or ``${ARG}`` whose ARG line is one.
    skip: set[str] = {f"${{{name}}}" for name in re.findall(r"^ARG\s+([A-Z0-9_]*IMAGE[A-Z0-9_]*)=", text, re.M)}
    continued = False  # a Dockerfile line after a trailing backslash belongs to the instruction above
    for number, line in enumerate(text.splitlines()):
        patterns = [COMPOSE_IMAGE] if compose else DOCKERFILE_REFS
        was_continued, continued = continued, not compose and line.rstrip().endswith("\\")
        for pattern in [] if was_continued else patterns:
            match = pattern.match(line)
            if match and match.group(2).split("@")[0] not in skip:
                yield number, match
                break
        stage = None if compose else STAGE.match(line)
        if stage:
            skip.add(stage.group(1))


def default_files() -> list[Path]:
    """The files whose references the deployment pulls: the compose file and every Dockerfile."""
    return [DOCKER / "compose.yaml", *sorted(p for p in DOCKER.rglob("Dockerfile*") if p.suffix == "")]


def pin_file(path: Path, resolver: Callable[[ImageRef], str]) -> list[str]:
    """Rewrite ``path`` with every pinnable reference digest-pinned; returns the references changed."""
    lines = path.read_text().splitlines(keepends=True)
    changed: list[str] = []
    for number, match in list(image_refs(path)):
        ref = parse_ref(match.group(2))
        if ref is None:
            continue
        pinned = ref.pinned(resolver(ref))
        if pinned != match.group(2):
            end = "\n" if lines[number].endswith("\n") else ""
            lines[number] = f"{match.group(1)}{pinned}{match.group(3)}{end}"
            changed.append(pinned)
    path.write_text("".join(lines))
    return changed


def read_allowance(path: Path = ALLOWANCE) -> dict[str, str]:
    """``{reference: reason}`` from the allowance file (``<reference>  # <reason>`` per line)."""
    allowed: dict[str, str] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        ref, _, reason = line.partition("#")
        allowed[ref.strip()] = reason.strip()
    return allowed


def unpinned(files: list[Path]) -> list[tuple[Path, str]]:
    """(file, reference) of every reference that is not digest-pinned."""
    return [(path, m.group(2)) for path in files for _, m in image_refs(path) if not is_digest_pinned(m.group(2))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--check", action="store_true", help="only report references neither pinned nor allowed")
    args = parser.parse_args(argv)
    files = args.files or default_files()
    if not args.check:
        for path in files:
            for ref in pin_file(path, resolve):
                print(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}: {ref}")
    allowed = read_allowance()
    bad = [(p, r) for p, r in unpinned(files) if r not in allowed]
    for path, ref in bad:
        print(f"{path}: {ref} is neither digest-pinned nor listed in {ALLOWANCE.name}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PinError as err:
        sys.exit(f"pin-images: {err}")
