"""The HopChain pages render from autoescaped templates: hostile data (markup, quotes, ``javascript:``
URLs) in questions, reasons, labels, ids and file names comes out as text, never as markup; the app's
caches are bounded objects of the app, not module state."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hopchain_airflow.ui.cache import TTLCache
from hopchain_airflow.ui.review_pages import Pages
from pipelines.review import AnnotatorRow, AnswerRow, HopStep, QuestionFilter, QuestionPage, QuestionRow, TrendRow

pytestmark = pytest.mark.unit

HOSTILE = "<script>alert('x')</script>\"'><img src=x onerror=alert(1)>"
JS_URL = "javascript:alert(document.cookie)"


def _question(**over: object) -> QuestionRow:
    fields: dict[str, object] = dict(
        question_id="q'1\"", batch_id="b/1?x=<y>", run_id=HOSTILE, shard=0, image_id="i" * 64,
        question=HOSTILE, answer=HOSTILE, num_hops=1, skeleton=HOSTILE, categories=[HOSTILE, "cup"],
        hops=[HopStep(index=0, op="find", args={"category": HOSTILE}, inputs=[], kind=HOSTILE, value=[1],
                      value_type="set", picked=[1])],
        status="rejected", reason=HOSTILE, reason_code="decision.disagreement", reason_kind="disagreement",
        agreed_answer=HOSTILE,
        answers=[AnswerRow(annotator=HOSTILE, answer=HOSTILE, verdict=HOSTILE,
                           submitted_at=datetime(2026, 1, 1, tzinfo=UTC), lead_time_s=1.0)])
    fields.update(over)
    return QuestionRow(**fields)  # type: ignore[arg-type]


def _no_markup_from_data(page: str) -> None:
    assert "<script>" not in page and "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;" in page


def test_question_pages_escape_question_text_reasons_labels_and_ids() -> None:
    pages, q = Pages(), _question()
    flt = QuestionFilter(run=HOSTILE, batch=HOSTILE, skeleton=HOSTILE, category=HOSTILE)
    listing = pages.questions("/hopchain", flt, QuestionPage(questions=[q], next=None, batches_read=1),
                              [HOSTILE], note=HOSTILE)
    one = pages.question("/hopchain", q)
    for page in (listing, one):
        _no_markup_from_data(page)
        # ids go into URLs percent-encoded, then escaped: no quote ends an attribute early
        assert "src='/hopchain/overlay/b%2F1%3Fx%3D%3Cy%3E/q%271%22/0.png?size=640'" in page
    assert "href='/hopchain/question/b%2F1%3Fx%3D%3Cy%3E/q%271%22'" in listing
    assert "value='&lt;script&gt;" in listing  # the filter inputs echo the query as text
    assert "data-reason-code='decision.disagreement'" in one and "data-reason-family='disagreement'" in one


def test_a_javascript_url_in_the_data_never_becomes_a_link_target() -> None:
    pages = Pages()
    status = pages.status({"runs": [{"run_id": JS_URL, "datadocs": JS_URL}], "batches": [], "consensus": [],
                           "releases": [{"tag": HOSTILE, "card": JS_URL}]}, error=HOSTILE)
    _no_markup_from_data(status)
    assert "href='javascript:" not in status and f"href='docs/{JS_URL}'" in status  # relative to the proxy
    q = _question(batch_id=JS_URL, question_id=JS_URL)
    for page in (pages.question("/hopchain", q),
                 pages.questions("/hopchain", QuestionFilter(), QuestionPage(questions=[q], next=None,
                                                                             batches_read=1), [])):
        assert "href='javascript:" not in page and "src='javascript:" not in page
        assert "src='/hopchain/overlay/javascript%3Aalert%28document.cookie%29/javascript%3A" in page


def test_annotator_and_trend_tables_escape_names_reasons_and_labels() -> None:
    pages = Pages()
    annotators = pages.annotators("/hopchain", [AnnotatorRow(
        annotator=HOSTILE, answered=9, batches=1, compared=9, agreement=0.5, accepted_answered=3,
        generator_agreement=None, median_lead_time_s=None, flagged=True, flag_reason=HOSTILE)], 30)
    _no_markup_from_data(annotators)
    assert "class='flagged'" in annotators and "<td>50%</td>" in annotators and "<td>–</td>" in annotators
    row = TrendRow(label=HOSTILE, at=datetime(2026, 1, 1, tzinfo=UTC), accepted=1, rejected=2,
                   reasons={HOSTILE: 2}, annotations_per_accepted=4.5)
    trends = pages.trends("/hopchain", [row], [row])
    _no_markup_from_data(trends)
    assert "<td>4.50</td><td>–</td>" in trends and trends.count("<img alt=") == 4


def test_the_status_page_labels_uncounted_answers_through_the_code_table() -> None:
    page = Pages().status({"consensus": [{"batch_id": "b", "integrity": {"integrity.changed_after_seen": 2,
                                                                          "integrity.new_kind<b>": 1}}]})
    assert "<b class='error'>3</b> (changed after it was seen: 2, integrity.new_kind&lt;b&gt;: 1)" in page


def test_the_ttl_cache_is_bounded_expires_and_drops_the_least_recently_used() -> None:
    now = [0.0]
    cache: TTLCache[int] = TTLCache(2, ttl_s=5, clock=lambda: now[0])
    made: list[str] = []

    def make(key: str) -> int:
        made.append(key)
        return len(made)

    assert cache.get_or("a", lambda: make("a")) == 1
    assert cache.get_or("a", lambda: make("a")) == 1 and made == ["a"]
    cache.get_or("b", lambda: make("b"))
    cache.get_or("a", lambda: make("a"))  # a is now the most recently used
    cache.get_or("c", lambda: make("c"))  # b goes
    assert len(cache) == 2 and made == ["a", "b", "c"]
    cache.get_or("b", lambda: make("b"))
    assert made[-1] == "b"
    now[0] = 10.0  # everything is older than ttl_s
    assert cache.get_or("b", lambda: make("b")) == 5 and made.count("b") == 3
    with pytest.raises(ValueError):
        TTLCache(0, 1)


def test_the_ui_keeps_no_module_level_cache() -> None:
    from hopchain_airflow.ui import app, review_routes

    for module in (app, review_routes):
        mutable = [name for name, value in vars(module).items()
                   if not name.startswith("__") and isinstance(value, dict | list | set)]
        assert not mutable, (module.__name__, mutable)
        assert not [name for name, value in vars(module).items() if hasattr(value, "cache_info")], module.__name__
