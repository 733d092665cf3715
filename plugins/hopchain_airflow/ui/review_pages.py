"""HTML of the review workspace (questions, one question's hop trace, annotators, trends).

Every value that comes from data (question text, categories, reasons, annotator names, ids) goes
through :func:`esc`; URLs are built with :func:`urllib.parse.quote` / ``urlencode`` and then escaped.
Nothing is loaded from outside the api-server: no external scripts, fonts or images.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import quote, urlencode

from pipelines.review import REASON_KINDS, AnnotatorRow, QuestionFilter, QuestionPage, QuestionRow, TrendRow

CSS = """
body{font-family:system-ui,sans-serif;margin:1.2rem;color:#1b1f24} h1{font-size:1.3rem}
h2{font-size:1.05rem;margin-top:1.4rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;font-size:.9rem} td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:left}
th{background:#f6f8fa} .empty{color:#777} .error{color:#b00} nav.tabs a{margin-right:1rem}
nav.tabs a.on{font-weight:bold;text-decoration:none;color:#1b1f24}
form.filters{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end;margin:.6rem 0;font-size:.85rem}
form.filters label{display:flex;flex-direction:column} form.filters input{width:9rem}
.card{display:flex;gap:1rem;border:1px solid #d0d7de;border-radius:6px;padding:.6rem;margin:.6rem 0}
.card img{max-width:260px;max-height:200px;border-radius:4px} .card .body{flex:1}
.q{font-size:1rem;margin:.1rem 0 .4rem} .meta{font-size:.8rem;color:#57606a}
.st{padding:.05rem .4rem;border-radius:3px;font-size:.8rem;color:#fff}
.st-accepted{background:#1a7f37} .st-rejected{background:#cf222e} .st-pending{background:#9a6700}
.hops{display:flex;flex-wrap:wrap;gap:.6rem} .hop{border:1px solid #eee;padding:.3rem;font-size:.8rem;width:330px}
.hop img{width:320px} code{font-size:.8rem} tr.flagged td{background:#fff1f0}
.plots img{margin:.4rem;border:1px solid #eee}
"""

TABS = (("", "Status"), ("questions", "Questions"), ("annotators", "Annotators"), ("trends", "Trends"))


def esc(v: Any) -> str:
    return html.escape(str(v if v is not None else ""))


def page(base: str, active: str, title: str, body: str) -> str:
    """A whole page: the tabs, a title and the body (already escaped HTML)."""
    tabs = "".join(f"<a href='{esc(base)}/{path}' class='{'on' if path == active else ''}'>{esc(name)}</a>"
                   for path, name in TABS)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>HopChain — {esc(title)}</title>"
            f"<style>{CSS}</style></head><body><h1>HopChain — {esc(title)}</h1>"
            f"<nav class='tabs'>{tabs}</nav>{body}</body></html>")


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"


def _secs(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f} s"


def question_url(base: str, q: QuestionRow) -> str:
    return f"{base}/question/{quote(q.batch_id, safe='')}/{quote(q.question_id, safe='')}"


def overlay_url(base: str, q: QuestionRow, hop: int | None, size: int = 640) -> str:
    which = "image" if hop is None else str(hop)
    return (f"{base}/overlay/{quote(q.batch_id, safe='')}/{quote(q.question_id, safe='')}/{which}.png"
            f"?size={size}")


def _answers(q: QuestionRow) -> str:
    if not q.answers:
        return "<p class='empty'>no counted answers yet</p>"
    rows = "".join(
        f"<tr class='answer'><td>{esc(a.annotator)}</td>"
        f"<td><b>{esc(a.answer if a.answer is not None else '—')}</b></td><td>{esc(a.verdict)}</td>"
        f"<td>{esc(a.submitted_at.strftime('%Y-%m-%d %H:%M:%S') if a.submitted_at else '')}</td>"
        f"<td>{esc(_secs(a.lead_time_s))}</td></tr>"
        for a in q.answers)
    return ("<table class='answers'><thead><tr><th>annotator</th><th>answer</th><th>verdict</th><th>submitted (UTC)"
            f"</th><th>time spent</th></tr></thead><tbody>{rows}</tbody></table>")


def _hop_label(h: Any) -> str:
    args = ", ".join(f"{k}={v}" for k, v in sorted(h.args.items()))
    ins = f" ← hop {', '.join(map(str, h.inputs))}" if h.inputs else ""
    return f"{h.index}. {h.op}({args}){ins}"


def hop_trace(base: str, q: QuestionRow, size: int = 320, lazy: bool = True) -> str:
    """Each hop: op and args, its value, and the image with the instances it picked (``lazy``: the
    browser loads an image when it scrolls into view)."""
    loading = "lazy" if lazy else "eager"
    cells = []
    for h in q.hops:
        value = json.dumps(h.value)
        picked = (f"picked instances {', '.join('#' + str(i) for i in h.picked)}" if h.picked
                  else "no instance")
        cells.append(
            f"<div class='hop' data-hop='{h.index}'><div><code>{esc(_hop_label(h))}</code></div>"
            f"<div>{esc(h.value_type)} value: <b class='value'>{esc(value)}</b> · {esc(h.kind)}</div>"
            f"<div class='meta'>{esc(picked)}</div>"
            f"<img loading='{loading}' alt='hop {h.index}' src='{esc(overlay_url(base, q, h.index, size * 2))}'></div>")
    return f"<div class='hops'>{''.join(cells)}</div>"


def _status(q: QuestionRow) -> str:
    return f"<span class='st st-{esc(q.status)}'>{esc(q.status)}</span>"


def question_card(base: str, q: QuestionRow) -> str:
    agreed = f" · agreed answer <b>{esc(q.agreed_answer)}</b>" if q.agreed_answer is not None else ""
    return (
        f"<div class='card question' data-status='{esc(q.status)}' data-qid='{esc(q.question_id)}'>"
        f"<a href='{esc(question_url(base, q))}'><img loading='lazy' alt='image' "
        f"src='{esc(overlay_url(base, q, None, 520))}'></a><div class='body'>"
        f"<p class='q'>{esc(q.question)}</p>"
        f"<div>{_status(q)} <span class='reason'>{esc(q.reason)}</span> · generator's answer "
        f"<b class='gen'>{esc(q.answer)}</b>{agreed}</div>"
        f"<div class='meta'>{esc(q.num_hops)} hops · <code>{esc(q.skeleton)}</code> · categories "
        f"{esc(', '.join(q.categories))} · batch {esc(q.batch_id)} · run {esc(q.run_id)}</div>"
        f"{_answers(q)}<details><summary>hop trace</summary>{hop_trace(base, q)}</details>"
        f"<a href='{esc(question_url(base, q))}'>open</a></div></div>")


def _select(name: str, value: str, options: list[tuple[str, str]]) -> str:
    opts = "".join(f"<option value='{esc(v)}'{' selected' if v == value else ''}>{esc(t)}</option>" for v, t in options)
    return f"<label>{esc(name)}<select name='{esc(name)}'>{opts}</select></label>"


def filters_form(base: str, flt: QuestionFilter, runs: list[str]) -> str:
    run_opts = [("", "any")] + [(r, r) for r in dict.fromkeys([*runs, *([flt.run] if flt.run else [])])]
    return (
        f"<form class='filters' method='get' action='{esc(base)}/questions'>"
        + _select("run", flt.run, run_opts)
        + f"<label>batch<input name='batch' value='{esc(flt.batch)}'></label>"
        + _select("status", flt.status, [("", "any"), ("accepted", "accepted"), ("rejected", "rejected"),
                                         ("pending", "pending")])
        + _select("reason", flt.reason, [("", "any")] + [(k, k) for k in REASON_KINDS])
        + _select("hops", str(flt.hops or ""), [("", "any")] + [(str(n), str(n)) for n in range(1, 7)])
        + f"<label>skeleton<input name='skeleton' value='{esc(flt.skeleton)}' placeholder='find>extreme(0)>…'></label>"
        + f"<label>category<input name='category' value='{esc(flt.category)}'></label>"
        + "<button type='submit'>filter</button></form>")


def questions_page(base: str, flt: QuestionFilter, result: QuestionPage, runs: list[str], note: str = "") -> str:
    cards = "".join(question_card(base, q) for q in result.questions) or "<p class='empty'>no question matches</p>"
    params = {k: v for k, v in flt.model_dump().items() if v not in ("", None)}
    nav = ""
    if result.next is not None:
        more = "look further back" if result.exhausted_budget else "older questions"
        href = f"{base}/questions?{urlencode({**params, 'cursor': result.next.text()})}"
        nav = f"<p class='nav'><a class='older' href='{esc(href)}'>{esc(more)} →</a></p>"
    summary = (f"<p class='meta' id='summary'>{len(result.questions)} questions shown · "
               f"{result.batches_read} batches read</p>")
    return page(base, "questions", "Questions",
                (f"<p class='meta'>{esc(note)}</p>" if note else "") + filters_form(base, flt, runs)
                + summary + cards + nav)


def question_page(base: str, q: QuestionRow) -> str:
    body = (f"<div class='card question' data-status='{esc(q.status)}'><div class='body'>"
            f"<p class='q'>{esc(q.question)}</p><div>{_status(q)} <span class='reason'>{esc(q.reason)}</span>"
            f" · generator's answer <b class='gen'>{esc(q.answer)}</b></div>"
            f"<div class='meta'>question {esc(q.question_id)} · image {esc(q.image_id[:16])}… · batch "
            f"{esc(q.batch_id)} · {esc(q.num_hops)} hops · <code>{esc(q.skeleton)}</code></div>"
            f"<h2>The four answers</h2>{_answers(q)}<h2>Hop trace</h2>{hop_trace(base, q, lazy=False)}</div></div>")
    return page(base, "questions", "Question", body)


def annotators_page(base: str, rows: list[AnnotatorRow], decisions: int) -> str:
    if not rows:
        table = "<p class='empty'>no decided batch yet</p>"
    else:
        trs = "".join(
            f"<tr class='{'flagged' if r.flagged else ''}' data-annotator='{esc(r.annotator)}'>"
            f"<td>{esc(r.annotator)}</td>"
            f"<td>{r.answered}</td><td>{r.batches}</td><td>{esc(_pct(r.agreement))}</td>"
            f"<td>{esc(_pct(r.generator_agreement))} <span class='meta'>of {r.accepted_answered}</span></td>"
            f"<td>{esc(_secs(r.median_lead_time_s))}</td>"
            f"<td>{'⚠ ' + esc(r.flag_reason) if r.flagged else ''}</td></tr>"
            for r in rows)
        table = ("<table id='annotators'><thead><tr><th>annotator</th><th>answered</th><th>batches</th>"
                 "<th>agreement with consensus</th><th>agreement with generator (accepted)</th>"
                 f"<th>median time</th><th>flag</th></tr></thead><tbody>{trs}</tbody></table>")
    note = (f"<p class='meta'>Over the newest {decisions} decided batches. Agreement with the consensus: the "
            "annotator's vote equals the majority (&gt;50%) vote of the question's counted answers. Flagged: "
            "more than 15 points below the median of the others (at least 5 answers).</p>")
    return page(base, "annotators", "Annotators", note + table)


def _trend_table(rows: list[TrendRow], first: str) -> str:
    if not rows:
        return "<p class='empty'>nothing recorded yet</p>"
    trs = "".join(
        f"<tr><td>{esc(r.label)}</td><td>{r.accepted}</td><td>{r.rejected}</td><td>{r.pending}</td>"
        f"<td>{esc(_pct(r.acceptance_rate))}</td><td>{esc(_pct(r.generator_precision))}</td>"
        f"<td>{esc(r.released if r.released is not None else '–')}</td>"
        f"<td>{esc(', '.join(f'{k}: {v}' for k, v in sorted(r.reasons.items())) or '–')}</td>"
        f"<td>{esc('–' if r.annotations_per_accepted is None else f'{r.annotations_per_accepted:.2f}')}</td>"
        f"<td>{esc('–' if r.annotations_saved is None else r.annotations_saved)}</td></tr>"
        for r in reversed(rows))
    return (f"<table><thead><tr><th>{esc(first)}</th><th>accepted</th><th>rejected</th><th>pending</th>"
            "<th>acceptance</th><th>generator precision</th><th>released</th><th>rejection reasons</th>"
            f"<th>annotations / accepted</th><th>annotations saved</th></tr></thead><tbody>{trs}</tbody></table>")


def trends_page(base: str, runs: list[TrendRow], releases: list[TrendRow]) -> str:
    plots = "".join(f"<img alt='{esc(alt)}' src='{esc(base)}/trends/{name}.png'>" for name, alt in (
        ("runs-rates", "acceptance and precision per run"), ("runs-reasons", "rejection reasons per run"),
        ("releases-rates", "acceptance and precision per release"), ("releases-released", "questions released")))
    return page(base, "trends", "Trends",
                f"<div class='plots'>{plots}</div><h2>Per run</h2>{_trend_table(runs, 'run')}"
                f"<h2>Per release</h2>{_trend_table(releases, 'release')}")
