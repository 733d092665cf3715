"""The ops table of ``docs/hop-programs.md``, generated from the registry.

The table sits between :data:`BEGIN` and :data:`END`; ``python -m pipelines.questions.ops --docs``
rewrites it, ``--check`` says whether the checked-in table is the generated one (a unit test does
the same, so CI fails on a stale table). Edit an op's module, never the table.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.questions.ops.spec import OpSpec, Registry

BEGIN = "<!-- ops-table:begin (generated from pipelines/questions/ops: `python -m pipelines.questions.ops --docs`) -->"
END = "<!-- ops-table:end -->"
#: the reference page (in a source checkout)
DOCS_PATH = Path(__file__).resolve().parents[3] / "docs" / "hop-programs.md"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(spec: OpSpec) -> str:
    name = f"`{spec.name}`" + ("" if spec.core else " *(added)*")
    codes = ", ".join(f"`{r}`" for r in spec.reasons) or "—"
    cells = (name, spec.doc.inputs, spec.doc.args, spec.doc.yields, spec.doc.margin, codes)
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def ops_table(registry: Registry) -> str:
    """The markdown table of every registered op, in listing order."""
    head = ["| op | inputs | args | yields | margin (reason) | reason codes |", "|---|---|---|---|---|---|"]
    return "\n".join(head + [_row(s) for s in registry])


def with_table(page: str, registry: Registry) -> str:
    """``page`` with the text between the markers replaced by the generated table."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page has no {BEGIN!r} ... {END!r} block")
    return page[: start + len(BEGIN)] + "\n" + ops_table(registry) + "\n" + page[end:]


def write_docs(registry: Registry, path: Path = DOCS_PATH) -> bool:
    """Rewrite the table in ``path``; True when the file changed."""
    page = path.read_text(encoding="utf-8")
    new = with_table(page, registry)
    if new != page:
        path.write_text(new, encoding="utf-8")
    return new != page


def docs_are_current(registry: Registry, path: Path = DOCS_PATH) -> bool:
    page = path.read_text(encoding="utf-8")
    return with_table(page, registry) == page
