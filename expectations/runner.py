"""Run a suite on a table with Great Expectations 1.x, save the result, build Data Docs.

Contract of :func:`validate`:

1. The table (and any reference tables) is converted to pandas from Arrow, so column dtypes follow
   the contract's Arrow types (see :func:`expectations.suites.common.pandas_dtype_name`).
2. The suite's computed ``_chk_*`` columns are added, then every check whose reference tables
   are present (and, for distributions, whose batch is large enough) runs in one GX validation on
   an ephemeral context. The others are reported as *skipped* with the reason.
3. Each expectation carries its stable name (``meta.name`` and the start of its ``description``,
   which Data Docs shows) and its severity from ``params.validation``.
4. The full result (GX's JSON plus a summary) is written — to ``out_dir`` and, given a store, to
   ``runs/<run_id>/validation/<suite>/<label|result>.json`` — and Data Docs are built with GX's
   own site builder and uploaded under ``runs/<run_id>/datadocs/<suite>[/<label>]/`` with a marker
   of their own (keys: :class:`pipelines.store.layout.RunKeys`; the run's index is merged from the markers
   on read, :func:`docs_sites`); all of this happens *before* anything is raised.
5. Then, if a ``critical`` expectation failed, :class:`ValidationFailed` is raised (naming the
   failing expectations); failed ``warning`` expectations are only reported.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from expectations.checks import REFERENCES, Check, References
from pipelines.contracts.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from pipelines.config import Params
    from pipelines.store import ObjectStore
    from pipelines.store.layout import RunKeys

log = logging.getLogger(__name__)
Severity = Literal["critical", "warning"]
DOCS_SITE = "hopchain"
TableLike = Any  # pa.Table | pd.DataFrame | str | Path (a Parquet file)


@dataclass
class ExpectationOutcome:
    """One expectation's outcome. ``examples`` are GX's partial unexpected values (with row ids)."""

    name: str
    family: str
    severity: Severity
    success: bool | None  # None when skipped
    description: str
    skipped: str | None = None
    unexpected_count: int | None = None
    observed_value: Any = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass
class ValidationReport:
    """What a validation run found and where its artifacts are."""

    suite: str
    run_id: str
    label: str | None
    rows: int
    outcomes: list[ExpectationOutcome]
    seconds: float = 0.0
    result_path: str | None = None
    result_key: str | None = None
    docs_dir: str | None = None
    docs_index_key: str | None = None
    docs_page_key: str | None = None

    @property
    def critical_failures(self) -> list[str]:
        return [o.name for o in self.outcomes if o.success is False and o.severity == "critical"]

    @property
    def warnings(self) -> list[str]:
        return [o.name for o in self.outcomes if o.success is False and o.severity == "warning"]

    @property
    def skipped(self) -> list[str]:
        return [o.name for o in self.outcomes if o.success is None]

    @property
    def success(self) -> bool:
        """No critical expectation failed (warnings do not count)."""
        return not self.critical_failures

    def outcome(self, name: str) -> ExpectationOutcome:
        for o in self.outcomes:
            if o.name == name:
                return o
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(success=self.success, critical_failures=self.critical_failures, warnings=self.warnings,
                 skipped=self.skipped)
        return d

    def summary(self) -> str:
        lines = [f"suite {self.suite} ({self.rows} rows, run {self.run_id}): "
                 + ("PASSED" if self.success else "FAILED")
                 + f" in {self.seconds:.1f}s"]
        for o in self.outcomes:
            if o.success is False:
                what = o.error or (f"{o.unexpected_count} unexpected" if o.unexpected_count is not None
                                   else f"observed {o.observed_value!r}")
                ex = f"; e.g. {json.dumps(o.examples[:3], default=str)[:300]}" if o.examples else ""
                lines.append(f"  {o.severity.upper():8s} {o.name}: {what}{ex}")
        for o in self.outcomes:
            if o.success is None:
                lines.append(f"  SKIPPED  {o.name}: {o.skipped}")
        if self.result_path or self.result_key:
            lines.append(f"  result: {self.result_key or self.result_path}")
        if self.docs_index_key or self.docs_dir:
            lines.append(f"  data docs: {self.docs_index_key or str(Path(self.docs_dir or '') / 'index.html')}")
        return "\n".join(lines)


class ValidationFailed(RuntimeError):
    """A critical expectation failed. The full result was saved before this was raised."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(
            f"validation suite {report.suite!r} failed critical expectations: "
            f"{', '.join(report.critical_failures)}"
            + (f" (result: {report.result_key or report.result_path})" if report.result_key or report.result_path
               else "")
        )


# -- inputs ---------------------------------------------------------------------------------------
def read_table(path: str | Path) -> pa.Table:
    """A Parquet file as an Arrow table (no casting: validation must see what was written)."""
    import pyarrow.parquet as pq

    return pq.read_table(path)


def to_frame(data: TableLike) -> pd.DataFrame:
    """An Arrow table, DataFrame or Parquet path as a pandas DataFrame with contract dtypes."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(data, str | Path):
        data = read_table(data)
    if isinstance(data, pd.DataFrame):
        try:
            data = pa.Table.from_pandas(data, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as err:
            log.warning("frame does not convert to Arrow (%s); validating it as given", err)
            return data.reset_index(drop=True)
    if not isinstance(data, pa.Table):
        raise TypeError(f"cannot validate a {type(data).__name__}: give an Arrow table, a DataFrame or a path")
    return data.to_pandas(types_mapper=_nullable_dtypes().get)


def _conformed(data: TableLike, schema: Any) -> TableLike:
    """``data`` read as its contract (:func:`pipelines.contracts.conform`) when the suite checks a
    contract table: the suites check values, not physical types (an int64 ``num_hops``, large
    strings, an absent optional column all pass). A table that breaks the contract is validated as
    it is, so the schema checks name the missing or unreadable column."""
    import pyarrow as pa

    from pipelines.contracts import SCHEMAS, ContractError, conform

    name = next((n for n, s in SCHEMAS.items() if schema is not None and s.equals(schema)), None)
    if name is None:
        return data
    table = read_table(data) if isinstance(data, str | Path) else data
    if not isinstance(table, pa.Table):
        return data
    try:
        return conform(table, name)
    except ContractError:
        return table


def _nullable_dtypes() -> dict[Any, Any]:
    """Arrow → pandas for integers and booleans: pandas' nullable dtypes (``Int32``, ``boolean``), so a
    nullable contract column keeps its type when it holds nulls (NumPy would give float/object)."""
    import pandas as pd
    import pyarrow as pa

    return {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
            pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


def severity_of(name: str, params: Params) -> Severity:
    return params.validation.severity.get(name, params.validation.default_severity)


def check_severity_names(params: Params) -> None:
    """Refuse ``validation.severity`` keys that name no expectation (a typo would silently do nothing)."""
    from expectations.suites import all_check_names
    from pipelines.config import ConfigError

    unknown = sorted(set(params.validation.severity) - all_check_names(params))
    if unknown:
        raise ConfigError(f"validation.severity names unknown expectations: {', '.join(unknown)}")


def _skip_reason(check: Check, refs: References, rows: int) -> str | None:
    missing = sorted(check.requires - refs.available())
    if missing:
        return f"needs the {', '.join(missing)} table"
    if rows < check.min_rows:
        return f"only {rows} rows (distribution checks need >= {check.min_rows})"
    return None


def _computed_columns(spec: Any, frame: pd.DataFrame, refs: References, params: Params,
                      checks: list[Check]) -> pd.DataFrame:
    """The suite's ``_chk_*`` columns. Absent contract columns are nulls here only; if computing
    fails on malformed data, every computed check fails with the error as its reason."""
    import pandas as pd

    filled = frame
    if spec.schema is not None:
        absent = [n for n in spec.schema.names if n not in frame.columns]
        if absent:
            filled = frame.assign(**{n: pd.Series([None] * len(frame), index=frame.index, dtype=object)
                                     for n in absent})
    try:
        prepared = spec.prepare(filled, refs, params)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as err:
        log.warning("suite %s: computed checks failed on this data: %r", spec.name, err)
        reason = f"could not be computed on this data: {type(err).__name__}: {err}"
        return pd.DataFrame({c.computed: pd.Series([reason] * len(frame), index=frame.index, dtype=object)
                             for c in checks if c.computed}, index=frame.index)
    return prepared[[c for c in prepared.columns if c.startswith("_chk_")]]


# -- GX -------------------------------------------------------------------------------------------
def _import_gx() -> tuple[Any, Any, Any]:
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe

    from expectations import custom

    return gx, gxe, custom


def _gx_validate(suite_name: str, batch: pd.DataFrame, active: list[tuple[Check, Severity]], params: Params,
                 id_columns: list[str], run_id: str, docs_dir: Path | None) -> Any:
    """Run the checks as one GX suite over ``batch``; returns GX's ExpectationSuiteValidationResult."""
    gx, gxe, custom = _import_gx()
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    for site in list(context.get_config().data_docs_sites or {}):
        context.delete_data_docs_site(site)  # the default one writes to a stray temp folder
    if docs_dir is not None:
        context.add_data_docs_site(site_name=DOCS_SITE, site_config={
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
    asset = context.data_sources.add_pandas("hopchain").add_dataframe_asset(suite_name)
    batch_definition = asset.add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(gx.ExpectationSuite(name=suite_name))
    for check, severity in active:
        expectation = check.expect(gxe, custom)
        expectation.description = f"{check.name}: {check.description}"
        expectation.meta = {"name": check.name, "family": check.family, "severity": severity}
        expectation.severity = severity
        suite.add_expectation(expectation)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite_name}-validation", data=batch_definition, suite=suite))
    actions = [gx.checkpoint.UpdateDataDocsAction(name="datadocs", site_names=[DOCS_SITE])] if docs_dir else []
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": params.validation.partial_unexpected_count}
    if id_columns:
        result_format["unexpected_index_column_names"] = id_columns
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=f"{suite_name}-checkpoint", validation_definitions=[definition], actions=actions,
        result_format=result_format))
    run = checkpoint.run(batch_parameters={"dataframe": batch},
                         run_id=RunIdentifier(run_name=run_id, run_time=datetime.now(UTC)))
    (result,) = run.run_results.values()
    return result


def _outcomes(result: Any, checks: dict[str, tuple[Check, Severity]]) -> list[ExpectationOutcome]:
    out = []
    for r in result.results:
        d = r.to_json_dict()
        name = d["expectation_config"]["meta"]["name"]
        check, severity = checks[name]
        res = d.get("result") or {}
        exc = d.get("exception_info") or {}
        error = exc.get("exception_message") if exc.get("raised_exception") else None
        if error is None and isinstance(exc, dict) and not {"raised_exception"} & exc.keys():
            # keyed by metric id when a metric failed to compute
            msgs = [v.get("exception_message") for v in exc.values() if isinstance(v, dict)]
            error = "; ".join(m for m in msgs if m) or None
        examples = res.get("partial_unexpected_index_list") or res.get("partial_unexpected_list") or []
        out.append(ExpectationOutcome(
            name=name, family=check.family, severity=severity, success=bool(d["success"]),
            description=check.description, unexpected_count=res.get("unexpected_count"),
            observed_value=res.get("observed_value"), examples=examples, error=error))
    return out


# -- artifacts ------------------------------------------------------------------------------------
def _site_files(docs_dir: Path) -> list[str]:
    """Relative paths of every file of a built Data Docs site."""
    return sorted(p.relative_to(docs_dir).as_posix() for p in docs_dir.rglob("*") if p.is_file())


def publish_docs_site(store: ObjectStore, run: RunKeys, suite: str, label: str | None, docs_dir: Path,
                      files: list[str]) -> str:
    """Upload one built Data Docs site (its ``files``, relative to ``docs_dir``) under
    ``<runs>/<run_id>/datadocs/<suite>[/<label>]/``, then its marker; returns the site's ``index.html`` key.

    The run's index is never read-modified-written here: each validation writes only its own site
    and its own marker (:meth:`~pipelines.store.layout.RunKeys.datadocs_site_marker`), so validations of
    parallel shards cannot drop each other's entries; :func:`docs_sites` merges the markers on read.
    """
    uploaded = set()
    for rel in files:
        ctype = mimetypes.guess_type(rel)[0] or "application/octet-stream"
        uploaded.add(store.put_bytes(run.datadocs_site_file(suite, label, rel), (docs_dir / rel).read_bytes(), ctype))
    # A rerun replaces the site: pages of an earlier attempt (timestamped names) are removed, so a
    # retried task leaves exactly one Data Docs site per suite and label.
    stale = [k for k in store.list(run.datadocs_site(suite, label)) if k not in uploaded]
    if stale:
        store.delete_keys(stale)
    store.put_bytes(run.datadocs_site_marker(suite, label), b"")  # after the site: a marker never dangles
    return run.datadocs_site_file(suite, label, "index.html")


def docs_sites(store: ObjectStore, run: RunKeys) -> list[str]:
    """The Data Docs sites of a run (``<suite>[/<label>]``, sorted), merged on read from their markers:
    one listing, whatever wrote them and in whatever order."""
    return sorted(run.datadocs_site_of_marker(k) for k in store.list(run.datadocs_sites_root()))


def validate(
    suite: str,
    data: TableLike,
    *,
    params: Params,
    refs: References | None = None,
    run_id: str = "manual",
    label: str | None = None,
    out_dir: str | Path | None = None,
    store: ObjectStore | None = None,
    raise_on_critical: bool = True,
) -> ValidationReport:
    """Validate ``data`` with suite ``suite`` (see the module docstring for the full contract).

    ``refs`` holds the reference tables cross-table checks join against (Arrow tables,
    DataFrames or Parquet paths are all accepted). ``label`` distinguishes several validations
    of the same suite in one run (e.g. ``shard-00003``). Data Docs are built when ``out_dir`` or
    ``store`` is given. Raises :class:`ValidationFailed` after saving, if a critical check failed
    and ``raise_on_critical``.
    """
    from expectations.suites import get_suite
    from pipelines.store.layout import RunKeys

    started = time.perf_counter()
    spec = get_suite(suite)
    check_severity_names(params)
    frame = to_frame(_conformed(data, spec.schema))
    refs = refs or References()
    refs = References(**{r: (to_frame(getattr(refs, r)) if getattr(refs, r) is not None else None)
                         for r in REFERENCES})
    checks = spec.checks(params)
    rows = len(frame)
    outcomes_skipped = []
    active: list[tuple[Check, Severity]] = []
    for c in checks:
        reason = _skip_reason(c, refs, rows)
        if reason:
            outcomes_skipped.append(ExpectationOutcome(c.name, c.family, severity_of(c.name, params), None,
                                                       c.description, skipped=reason))
        else:
            active.append((c, severity_of(c.name, params)))
    computed = _computed_columns(spec, frame, refs, params, [c for c, _ in active])
    batch = frame.join(computed)
    id_columns = [c for c in spec.id_columns if c in frame.columns]

    out_path = Path(out_dir) if out_dir is not None else None
    tmp_docs = None
    docs_dir: Path | None = None
    if out_path is not None:
        docs_dir = (out_path / "datadocs" / suite / (label or "")).resolve()
        shutil.rmtree(docs_dir, ignore_errors=True)  # one run's site: a rerun replaces it
    elif store is not None:
        tmp_docs = tempfile.TemporaryDirectory(prefix="hopchain-datadocs-")
        docs_dir = Path(tmp_docs.name)
    try:
        result = _gx_validate(suite, batch, active, params, id_columns, run_id, docs_dir)
        by_name = {c.name: (c, s) for c, s in active}
        outcomes = _outcomes(result, by_name)
        order = {c.name: i for i, c in enumerate(checks)}
        report = ValidationReport(suite=suite, run_id=run_id, label=label, rows=rows,
                                  outcomes=sorted(outcomes + outcomes_skipped, key=lambda o: order[o.name]))
        report.seconds = time.perf_counter() - started
        stem = f"{suite}-{label}" if label else suite
        if out_path is not None:
            report.result_path = str(out_path / f"{stem}.validation.json")
            report.docs_dir = str(docs_dir)
        pages: list[str] = []
        if store is not None:
            assert docs_dir is not None
            run = RunKeys(params.store.runs_prefix, run_id)
            report.result_key = run.validation_result(suite, label)
            pages = _site_files(docs_dir)
            report.docs_index_key = run.datadocs_site_file(suite, label, "index.html")
            report.docs_page_key = next((run.datadocs_site_file(suite, label, p) for p in pages
                                         if p.startswith("validations/") and p.endswith(".html")), None)
        # the full result is saved first: before Data Docs go up and before anything is raised
        document = json.loads(json.dumps(
            {"report": report.to_dict(), "great_expectations": result.to_json_dict()}, default=str))
        if report.result_path:
            write_atomic(report.result_path, json.dumps(document, indent=1, default=str))
        if store is not None and report.result_key:
            store.put_json(report.result_key, document)
            publish_docs_site(store, run, suite, label, docs_dir, pages)  # type: ignore[arg-type]
    finally:
        if tmp_docs is not None:
            tmp_docs.cleanup()
    log.info("%s", report.summary())
    if raise_on_critical and not report.success:
        raise ValidationFailed(report)
    return report


def render_docs_index(run_id: str, sites: list[str]) -> str:
    """The HTML of a run's Data Docs index (``templates/datadocs_index.html``, autoescaped): one link per
    site, ``sites`` being the sites' folders relative to the index (``<suite>[/<label>]``)."""
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("expectations", "templates"),
                             autoescape=jinja2.select_autoescape(("html",)), auto_reload=False)
    return env.get_template("datadocs_index.html").render(run_id=run_id, sites=sites)


def write_docs_index(store: ObjectStore, run: RunKeys) -> str:
    """``<runs>/<run_id>/datadocs/index.html``: one page linking the Data Docs site of every suite
    (and label) validated in the run, rendered from :func:`docs_sites` (GX builds one site per
    validation; this joins them). Called by one task after the validations (the run's summary), so
    it is complete; the markers, not this page, are the record. Returns the page's key."""
    page = render_docs_index(run.run_id, docs_sites(store, run))
    key = run.datadocs_index()
    store.put_bytes(key, page.encode(), "text/html")
    return key
