"""Versioned prompt files: ``prompts/<version>/<name>.md`` (``string.Template`` placeholders)."""

from __future__ import annotations

from pathlib import Path
from string import Template

PROMPTS_DIR = Path(__file__).resolve().parent


def load_prompt(version: str, name: str) -> Template:
    """The prompt template ``<version>/<name>.md``; raises FileNotFoundError naming the path."""
    path = PROMPTS_DIR / version / f"{name}.md"
    if not path.is_file():
        raise FileNotFoundError(f"prompt {name!r} of version {version!r} not found at {path}")
    return Template(path.read_text(encoding="utf-8"))
