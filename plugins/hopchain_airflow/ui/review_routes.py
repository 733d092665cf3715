"""Routes of the review workspace, added to the HopChain app (:func:`add_review_routes`).

* ``/questions`` (HTML) and ``/api/questions`` (JSON): one page of questions, filtered by ``run``, ``batch``,
  ``status``, ``reason``, ``hops``, ``skeleton``, ``category``; ``cursor`` is where the page starts.
  ``dag`` (from the DAG-run link) only adds a note when the run is not a ``hopchain_nightly`` run.
* ``/question/{batch_id}/{question_id}``: one question, its four answers and its hop trace.
* ``/overlay/{batch_id}/{question_id}/{hop|image}.png?size=N``: the image with a hop's instances drawn.
* ``/annotators`` (+ ``/api/annotators``), ``/trends`` (+ ``/api/trends``, ``/trends/{plot}.png``).

Every route depends on :data:`~hopchain_airflow.ui.security.HopChainReader`. The object store not
answering is 502; an image outside the platform bucket's known prefixes is 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from hopchain_airflow.ui.cache import TTLCache
from hopchain_airflow.ui.review_pages import PLOTS as PLOT_NAMES
from hopchain_airflow.ui.review_pages import Pages
from hopchain_airflow.ui.security import HopChainReader

if TYPE_CHECKING:
    from pipelines.review import Review, TrendRow

PLOTS = tuple(name for name, _ in PLOT_NAMES)
#: trend rows are served from the app's cache for this long (one entry: the newest decisions and releases)
TRENDS_TTL_S = 30.0


def _base(request: Request) -> str:
    return str(request.scope.get("root_path") or "").rstrip("/")


def _store_call(fn: Callable[[], Any]) -> Any:
    """Run a read of the object store; a store that does not answer becomes 502."""
    from minio.error import S3Error

    from pipelines.review import ImageRefused

    try:
        return fn()
    except (HTTPException, ImageRefused, KeyError):
        raise
    except S3Error as err:
        if err.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
            raise HTTPException(404, "not found") from None
        raise HTTPException(502, f"object store error ({err.code})") from None
    except (OSError, ConnectionError) as exc:
        raise HTTPException(502, f"object store unreachable ({type(exc).__name__})") from None
    except Exception as exc:
        if type(exc).__module__.startswith(("urllib3", "minio")):
            raise HTTPException(502, f"object store unreachable ({type(exc).__name__})") from None
        raise


def add_review_routes(app: FastAPI, review: Callable[[], Review], pages: Pages) -> None:
    """Add the review routes to ``app``; ``review`` gives the app's reader, ``pages`` renders the HTML.
    Trend rows are kept :data:`TRENDS_TTL_S` seconds in a cache of these routes."""
    from pipelines.review import Cursor, QuestionFilter, trend_plot

    trend_cache: TTLCache[tuple[list[TrendRow], list[TrendRow]]] = TTLCache(1, TRENDS_TTL_S)

    def question_filter(run: str, batch: str, status: str, reason: str, hops: str, skeleton: str,
                        category: str) -> QuestionFilter:
        try:
            return QuestionFilter(run=run.strip(), batch=batch.strip(), status=status, reason=reason,
                                  hops=int(hops) if hops.strip() else None, skeleton=skeleton.strip(),
                                  category=category.strip())
        except ValueError:
            raise HTTPException(422, "bad filter value") from None

    def find(flt: QuestionFilter, cursor: str, per_page: int) -> Any:
        return _store_call(lambda: review().questions(flt, Cursor.parse(cursor), per_page=per_page))

    @app.get("/api/questions")
    def api_questions(user: HopChainReader, run: str = "", batch: str = "", status: str = "", reason: str = "",
                      hops: str = "", skeleton: str = "", category: str = "", cursor: str = "",
                      per_page: int = Query(20, ge=1, le=100)) -> JSONResponse:
        result = find(question_filter(run, batch, status, reason, hops, skeleton, category), cursor, per_page)
        return JSONResponse(result.model_dump(mode="json"))

    @app.get("/questions", response_class=HTMLResponse)
    def questions(request: Request, user: HopChainReader, run: str = "", batch: str = "", status: str = "",
                  reason: str = "", hops: str = "", skeleton: str = "", category: str = "", cursor: str = "",
                  dag: str = "", per_page: int = Query(20, ge=1, le=100)) -> HTMLResponse:
        flt = question_filter(run, batch, status, reason, hops, skeleton, category)
        result = find(flt, cursor, per_page)
        recent = _store_call(lambda: review().recent_runs(20))
        note = ""
        if dag and dag != "hopchain_nightly":
            note = (f"Questions are pushed by hopchain_nightly runs; this is a run of {dag}: its decisions are "
                    "on the Status and Trends tabs.")
        return HTMLResponse(pages.questions(_base(request), flt, result, recent, note))

    def one(batch_id: str, question_id: str) -> Any:
        q = _store_call(lambda: review().question(batch_id, question_id))
        if q is None:
            raise HTTPException(404, "no such question in that batch")
        return q

    @app.get("/question/{batch_id}/{question_id}", response_class=HTMLResponse)
    def question(request: Request, batch_id: str, question_id: str, user: HopChainReader) -> HTMLResponse:
        return HTMLResponse(pages.question(_base(request), one(batch_id, question_id)))

    @app.get("/overlay/{batch_id}/{question_id}/{which}.png")
    def overlay(batch_id: str, question_id: str, which: str, user: HopChainReader,
                size: int = Query(640, ge=64, le=2048)) -> Response:
        from pipelines.review import ImageRefused

        q = one(batch_id, question_id)
        if which != "image" and not (which.isdigit() and int(which) < len(q.hops)):
            raise HTTPException(404, "no such hop")
        try:
            png = _store_call(lambda: review().overlay(q, None if which == "image" else int(which), size))
        except ImageRefused as refused:
            raise HTTPException(404, str(refused)) from None
        except KeyError:
            raise HTTPException(404, "the question's image is not in its run's manifest") from None
        return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    @app.get("/api/annotators")
    def api_annotators(user: HopChainReader, decisions: int = Query(30, ge=1, le=200)) -> JSONResponse:
        rows = _store_call(lambda: review().annotators(decisions))
        return JSONResponse([r.model_dump(mode="json") for r in rows])

    @app.get("/annotators", response_class=HTMLResponse)
    def annotators(request: Request, user: HopChainReader,
                   decisions: int = Query(30, ge=1, le=200)) -> HTMLResponse:
        rows = _store_call(lambda: review().annotators(decisions))
        return HTMLResponse(pages.annotators(_base(request), rows, decisions))

    def trend_rows() -> tuple[list[TrendRow], list[TrendRow]]:
        return trend_cache.get_or("trends", lambda: _store_call(lambda: review().trends()))

    @app.get("/api/trends")
    def api_trends(user: HopChainReader) -> JSONResponse:
        runs, releases = trend_rows()
        return JSONResponse({"runs": [r.model_dump(mode="json") for r in runs],
                             "releases": [r.model_dump(mode="json") for r in releases]})

    @app.get("/trends", response_class=HTMLResponse)
    def trends(request: Request, user: HopChainReader) -> HTMLResponse:
        runs, releases = trend_rows()
        return HTMLResponse(pages.trends(_base(request), runs, releases))

    @app.get("/trends/{plot}.png")
    def trend_png(plot: str, user: HopChainReader) -> Response:
        if plot not in PLOTS:
            raise HTTPException(404, "no such plot")
        runs, releases = trend_rows()
        scope, what = plot.split("-", 1)
        rows = runs if scope == "runs" else releases
        kind: Literal["rates", "released", "reasons"] = what  # type: ignore[assignment]
        title = {"rates": "acceptance rate and generator precision", "reasons": "rejection reasons",
                 "released": "questions released"}[what] + (" per run" if scope == "runs" else " per release")
        return Response(trend_plot(rows, kind, title), media_type="image/png")
