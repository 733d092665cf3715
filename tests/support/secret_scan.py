"""A small scanner for secret values committed under ``docker/`` (used by test_compose.py).

A *secret-looking name* (PASSWORD, SECRET, TOKEN, KEY, AUTH, CREDENTIAL, ...) may only be given a
placeholder: an empty value, an interpolation (``$VAR``, ``${VAR:?...}``), a boolean flag, or a
file reference (a name ending in ``_FILE``). The same holds for the password part of a URL
(``scheme://user:PASSWORD@host``), for JSON fields named password/login/token/secret, and for the
argument after a ``--password``-like command-line flag.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SECRET_NAME = re.compile(r"(PASS|SECRET|TOKEN|KEY|AUTH|CREDENTIAL)", re.IGNORECASE)
_URL_CREDS = re.compile(r"[a-z][a-z0-9+.-]*://[^\s:/@\"']*:([^\s@\"']+)@", re.IGNORECASE)
_JSON_FIELD = re.compile(
    r"\"(password|passwd|secret|token|login|[a-z_]*key)\"\s*:\s*\"([^\"]*)\"", re.IGNORECASE)
_LINE_ASSIGN = re.compile(r"^\s*(?:export\s+|ENV\s+|ARG\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S*)")
_FLAG = re.compile(r"^--?[a-z-]*(pass|secret|token|key)[a-z-]*$", re.IGNORECASE)


def is_placeholder(name: str, value: Any) -> bool:
    """True when ``value`` (given to ``name``) cannot be a committed secret."""
    if value is None or isinstance(value, bool):
        return True
    text = str(value).strip().strip("'\"").rstrip(",")
    if text == "" or text.startswith("$"):
        return True
    if text.lower() in ("true", "false"):
        return True
    return name.upper().endswith("_FILE")


def _text_findings(text: str) -> Iterator[str]:
    for m in _URL_CREDS.finditer(text):
        if not is_placeholder("url password", m.group(1)):
            yield f"credentials in a {m.group(0).split('://', 1)[0]}:// URL"
    for m in _JSON_FIELD.finditer(text):
        if not is_placeholder(m.group(1), m.group(2)):
            yield f"JSON field {m.group(1)!r} has a value"


def _walk_yaml(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            if isinstance(value, (dict, list)):
                yield from _walk_yaml(value, sub)
                continue
            if SECRET_NAME.search(str(key)) and not is_placeholder(str(key), value):
                yield f"{sub} has a value"
            if isinstance(value, str):
                yield from (f"{sub}: {f}" for f in _text_findings(value))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            sub = f"{path}[{i}]"
            if isinstance(item, (dict, list)):
                yield from _walk_yaml(item, sub)
                continue
            text = str(item)
            if "=" in text:  # environment list form NAME=VALUE
                name, _, value = text.partition("=")
                if SECRET_NAME.search(name) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) \
                        and not is_placeholder(name, value):
                    yield f"{sub} ({name}) has a value"
            if i > 0 and _FLAG.match(str(node[i - 1])) and not is_placeholder(str(node[i - 1]), item):
                yield f"{sub} follows {node[i - 1]} and has a value"
            yield from (f"{sub}: {f}" for f in _text_findings(text))


def scan_file(path: Path) -> list[str]:
    """Findings (without the secret values) for one file."""
    text = path.read_text(encoding="utf-8", errors="replace")
    findings: list[str] = []
    if path.suffix in (".yaml", ".yml"):
        findings += list(_walk_yaml(yaml.safe_load(text), path.name))
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        m = _LINE_ASSIGN.match(line)
        if m and SECRET_NAME.search(m.group(1)) and not is_placeholder(m.group(1), m.group(2)):
            findings.append(f"{path.name}:{n}: {m.group(1)} has a value")
        if path.suffix not in (".yaml", ".yml"):
            findings += [f"{path.name}:{n}: {f}" for f in _text_findings(line)]
    return findings


def scan_tree(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            findings = scan_file(path)
            if findings:
                out[str(path.relative_to(root))] = findings
    return out
