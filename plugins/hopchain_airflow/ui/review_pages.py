"""The HTML of the HopChain pages: the Status tab and the review workspace (questions, one question's
hop trace, annotators, trends), rendered from the Jinja2 templates in ``templates/``.

Autoescaping is on for every template: every value that comes from data (question text, categories,
reasons, annotator names, ids, URLs) is escaped where the template prints it, and no markup is built in
Python. URLs are built here with :func:`urllib.parse.quote` / ``urlencode`` and escaped by the template.
Nothing is loaded from outside the api-server: no external scripts, fonts or images.

:class:`Pages` holds one template environment (Jinja2 compiles each template once and keeps it): the app
makes one in :func:`~hopchain_airflow.ui.app.create_app`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2

from pipelines.contracts.rejects import reason_label
from pipelines.review import REASON_KINDS, AnnotatorRow, HopStep, QuestionFilter, QuestionPage, QuestionRow, TrendRow

TEMPLATES = Path(__file__).parent / "templates"
TABS = (("", "Status"), ("questions", "Questions"), ("annotators", "Annotators"), ("trends", "Trends"))
PLOTS = (("runs-rates", "acceptance and precision per run"), ("runs-reasons", "rejection reasons per run"),
         ("releases-rates", "acceptance and precision per release"), ("releases-released", "questions released"))
STATUSES = (("", "any"), ("accepted", "accepted"), ("rejected", "rejected"), ("pending", "pending"))


def pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def secs(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} s"


def question_url(base: str, q: QuestionRow) -> str:
    return f"{base}/question/{quote(q.batch_id, safe='')}/{quote(q.question_id, safe='')}"


def overlay_url(base: str, q: QuestionRow, hop: int | None, size: int = 640) -> str:
    which = "image" if hop is None else str(hop)
    return (f"{base}/overlay/{quote(q.batch_id, safe='')}/{quote(q.question_id, safe='')}/{which}.png"
            f"?size={size}")


def hop_label(h: HopStep) -> str:
    """``2. extreme(key=cx, order=max) ← hop 1``: one hop of the trace, as text."""
    args = ", ".join(f"{k}={v}" for k, v in sorted(h.args.items()))
    ins = f" ← hop {', '.join(map(str, h.inputs))}" if h.inputs else ""
    return f"{h.index}. {h.op}({args}){ins}"


def picked_text(h: HopStep) -> str:
    return f"picked instances {', '.join('#' + str(i) for i in h.picked)}" if h.picked else "no instance"


def _finalize(value: Any) -> Any:
    """What ``{{ None }}`` prints: nothing (a missing field is an empty cell, never the word None)."""
    return "" if value is None else value


def template_environment() -> jinja2.Environment:
    """The environment of the HopChain pages: templates from ``templates/``, autoescaped."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(("html",)),
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        finalize=_finalize,
    )
    env.filters.update(pct=pct, secs=secs, hop_label=hop_label, picked_text=picked_text,
                       tojson_text=lambda v: json.dumps(v))
    env.globals.update(question_url=question_url, overlay_url=overlay_url, tabs=TABS)
    return env


def _status_rows(data: dict[str, Any]) -> dict[str, Any]:
    """The Status tab's rows with what the template prints already worked out (progress, costs, labels)."""
    batches = []
    for b in data.get("batches", []):
        prog = b.get("progress") or {}
        batches.append({**b, "progress_error": prog.get("error"),
                        "progress": [] if "error" in prog else sorted(prog.items())})
    consensus = []
    for c in data.get("consensus", []):
        value = c.get("annotations_per_accepted")
        found = c.get("integrity") or {}
        consensus.append({**c, "per_accepted": "-" if value is None else f"{float(value):.2f}",
                          "annotations_saved": c.get("annotations_saved", 0),
                          "source": c.get("source", "label-studio"),
                          "not_counted": [(reason_label(code).label, n) for code, n in sorted(found.items())],
                          "not_counted_total": sum(found.values())})
    return {"runs": data.get("runs", []), "batches": batches, "consensus": consensus,
            "releases": data.get("releases", [])}


class Pages:
    """Renders the HopChain pages (one template environment, made once per app)."""

    def __init__(self, env: jinja2.Environment | None = None) -> None:
        self.env = env or template_environment()

    def _render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def status(self, data: dict[str, Any], error: str = "") -> str:
        """The Status tab: one page of runs, batches (with live progress), decisions and releases."""
        page_no = int(data.get("page") or 0)
        return self._render("status.html", **_status_rows(data), error=error, page_no=page_no,
                            newer=page_no > 0, older=bool(data.get("more")),
                            required=data.get("annotators_required", 4))

    def questions(self, base: str, flt: QuestionFilter, result: QuestionPage, runs: list[str],
                  note: str = "") -> str:
        """One page of question cards, the filters, and the link to the older ones."""
        params = {k: v for k, v in flt.model_dump().items() if v not in ("", None)}
        older = (f"{base}/questions?{urlencode({**params, 'cursor': result.next.text()})}"
                 if result.next is not None else "")
        run_options = [("", "any")] + [(r, r) for r in dict.fromkeys([*runs, *([flt.run] if flt.run else [])])]
        return self._render(
            "questions.html", base=base, active="questions", title="Questions", flt=flt, result=result,
            note=note, older_href=older, run_options=run_options, status_options=STATUSES,
            reason_options=[("", "any")] + [(k, k) for k in REASON_KINDS],
            hop_options=[("", "any")] + [(str(n), str(n)) for n in range(1, 7)])

    def question(self, base: str, q: QuestionRow) -> str:
        """One question: its decision, the counted answers and the hop trace (images loaded at once)."""
        return self._render("question.html", base=base, active="questions", title="Question", q=q)

    def annotators(self, base: str, rows: list[AnnotatorRow], decisions: int) -> str:
        return self._render("annotators.html", base=base, active="annotators", title="Annotators", rows=rows,
                            decisions=decisions)

    def trends(self, base: str, runs: list[TrendRow], releases: list[TrendRow]) -> str:
        return self._render("trends.html", base=base, active="trends", title="Trends", runs=runs,
                            releases=releases, plots=PLOTS)
