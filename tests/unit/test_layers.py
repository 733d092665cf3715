"""The house has three floors — ``dags/`` → ``plugins/`` → ``pipelines/`` (+ ``expectations/``) — with
no arrow back up and no circle, counting imports inside functions too (a lazy import hides a
dependency from the reader, not from this test). And one rule of where things live: only
``pipelines/store/layout.py`` builds object keys."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("pipelines", "expectations", "plugins", "dags")


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO / "plugins") if path.is_relative_to(REPO / "plugins") else path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module name imported anywhere in ``path`` (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return out


def _files(*roots: str) -> list[Path]:
    return sorted(p for r in roots for p in (REPO / r).rglob("*.py"))


def _top(name: str) -> str:
    return name.split(".")[0]


def test_no_arrow_goes_back_up() -> None:
    bad = []
    for path in _files("pipelines", "expectations"):
        for name in _imports(path):
            if _top(name) in ("airflow", "hopchain_airflow", "dags", "hopchain_demo", "tests"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    for path in _files("plugins"):
        for name in _imports(path):
            if _top(name) in ("dags", "hopchain_demo", "tests"):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_the_command_line_reaches_the_local_dev_stack() -> None:
    """The release, deployment settings and Airflow side never import ``pipelines.stack``: the
    local stack is a developer tool, and production has none."""
    bad = []
    for path in _files("pipelines", "expectations", "plugins", "dags"):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("pipelines/stack/") or path.name == "cli.py":
            continue
        if any(n == "pipelines.stack" or n.startswith("pipelines.stack.") for n in _imports(path)):
            bad.append(rel)
    assert not bad, bad


def test_no_import_circle_among_product_modules() -> None:
    modules = {_module_name(p): p for p in _files(*PRODUCT)}
    graph = {m: {n for n in _imports(p) if n in modules and n != m} for m, p in modules.items()}
    # a module importing its own package's __init__ is the package loading, not a dependency
    graph = {m: {n for n in deps if not m.startswith(n + ".")} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not cycles, cycles


# -- no HTML built in Python ---------------------------------------------------------------------------
#: HTML elements a page is made of. Lowercase only: Label Studio's labeling config is XML with capitalised
#: tags (``<View>``, ``<Image>``, ``<Number>``, ``<Choices>``), which is not a page and stays in Python.
HTML_TAGS = ("a", "b", "body", "br", "button", "code", "details", "div", "em", "form", "h1", "h2", "h3", "h4",
             "head", "html", "i", "iframe", "img", "input", "label", "li", "link", "meta", "nav", "ol", "option",
             "p", "pre", "script", "section", "select", "span", "strong", "style", "summary", "table", "tbody",
             "td", "th", "thead", "title", "tr", "ul")
#: a tag (or the start of one that an f-string part leaves open: ``f"<a href='{url}'>"``), or a doctype
_HTML_TAG = re.compile(r"(?i:<!doctype html)|</?(?:" + "|".join(HTML_TAGS) + r")(?:\s[^<>]*)?(?:/?>|$)")


# -- keys in one place ------------------------------------------------------------------------------
LAYOUT_MODULE = "pipelines/store/layout.py"
KEY_SCOPE = ("pipelines", "expectations", "plugins", "dags", "hopchain_demo", "bench")
# key segments only the layout names (a constant equal to one of these is a key being spelled out)
LAYOUT_SEGMENTS = frozenset({"_index", "newest-first", "_sites", "built.json", "pseudonym.key", "summary.json",
                             "plan.json", "registry.json"})
# how an f-string ends when it spells out a key's leaf (journal segments, COCO inputs, index pages)
LAYOUT_LEAVES = (".jsonl", "/instances.json", "/summary.json", "/index.html")


def _bucket_prefixes() -> tuple[str, ...]:
    """``runs/``, ``inputs/``, ... : every top-level prefix of the bucket, as ``params.store`` names them."""
    from pipelines.config import StoreConfig

    return tuple(f"{v.strip('/')}/" for k, v in StoreConfig().model_dump().items() if k.endswith("_prefix"))


def _docstrings(tree: ast.AST) -> set[int]:
    """``id()`` of every docstring node: documentation may show markup or ``<table>`` placeholders."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                out.add(id(first.value))
    return out


def html_strings(source: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """``(line, text)`` of every string constant or f-string part of ``source`` holding an HTML tag."""
    tree = ast.parse(source, filename=filename)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            # f-string parts are Constants inside a JoinedStr: ast.walk visits them too
            hit = _HTML_TAG.search(node.value.replace("\n", " "))
            if hit:
                found.append((node.lineno, hit.group(0)))
    return found


def test_no_html_is_built_in_python() -> None:
    """Pages render from Jinja2 templates with autoescaping (``templates/`` next to the code); a string of
    HTML in Python is markup that escapes nothing by default."""
    bad = [f"{path.relative_to(REPO)}:{line}: {text}" for path in _files("pipelines", "plugins", "expectations")
           for line, text in html_strings(path.read_text(), str(path))]
    assert not bad, "\n".join(bad)


def test_the_html_rule_catches_a_planted_page_and_spares_labeling_xml() -> None:
    planted = '''
def page(name):
    """Returns a <table> of things (documentation may say so)."""
    rows = "".join(f"<tr><td>{n}</td></tr>" for n in name)
    return "<div class='x'>" + rows + f"<a href='/q/{name}'>open</a></div>"
'''
    assert set(html_strings(planted)) == {(4, "<tr>"), (4, "</td>"), (5, "<div class='x'>"), (5, "<a href='/q/"),
                                          (5, "</a>")}  # the docstring's <table> is documentation
    assert html_strings('x = "<!doctype html><html><body></body></html>"')
    assert html_strings('x = "<p>Answer with <b>one number</b></p>"')
    labeling = '''CONFIG = """<View>
  <Image name="image" value="$image"/>
  <Number name="answer" toName="image"/>
  <Choices name="v" toName="image"><Choice value="a"/></Choices>
  <Text name="t" value="$q"/><Header value="$question"/><TextArea name="c" toName="image"/>
</View>"""'''
    assert html_strings(labeling) == []
    assert html_strings('KEY = "<root>/<run_id>/<name>.parquet"; T = "<think>x</think>"') == []


def key_building(source: str, prefixes: tuple[str, ...]) -> list[str]:
    """Where ``source`` builds an object key itself: a ``safe_key`` call (the layout's join), a string
    that starts with a bucket prefix (``"runs/..."``, ``f"annotators/{x}"``), a layout-only segment
    (``"_index"``, ``"summary.json"``, ...), an f-string making a shard name (``f"shard-{n:05d}"``) or
    ending in a layout leaf (``f"{folder}{stamp}.jsonl"``, ``f"{prefix}/instances.json"``), or DVC's
    object path (``/files/md5/``). Docstrings are prose, not keys."""
    tree = ast.parse(source)
    docs = _docstrings(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if (f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else "") == "safe_key":
                found.append(f"line {node.lineno}: safe_key(...)")
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            if any(isinstance(a, ast.Constant) and str(a.value).endswith("shard-") and isinstance(b, ast.FormattedValue)
                   for a, b in zip(parts, parts[1:], strict=False)):
                found.append(f"line {node.lineno}: f-string shard name")
            text = [str(p.value) for p in parts if isinstance(p, ast.Constant)]
            if any("/files/md5/" in t for t in text) or (
                    parts and isinstance(parts[-1], ast.Constant) and str(parts[-1].value).endswith(LAYOUT_LEAVES)):
                found.append(f"line {node.lineno}: f-string key leaf {''.join(text)!r}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if node.value.startswith(prefixes):
                found.append(f"line {node.lineno}: key literal {node.value[:60]!r}")
            elif node.value in LAYOUT_SEGMENTS:
                found.append(f"line {node.lineno}: layout segment {node.value!r}")
    return found


def test_no_object_key_is_built_outside_the_layout_module() -> None:
    """Only :mod:`pipelines.store.layout` builds object keys; every other module asks it."""
    prefixes = _bucket_prefixes()
    bad = []
    for path in _files(*KEY_SCOPE):
        rel = path.relative_to(REPO).as_posix()
        if rel != LAYOUT_MODULE:
            bad += [f"{rel} {hit}" for hit in key_building(path.read_text(), prefixes)]
    assert not bad, "object keys built outside pipelines/store/layout.py:\n" + "\n".join(bad)


@pytest.mark.parametrize("planted", [
    'key = safe_key(runs, run_id, "stats")',
    'key = store_mod.safe_key(prefix, name)',
    'key = f"runs/{run_id}/summary.json"',
    'key = "annotators/registry.json"',
    'key = f"annotation-journal/{project}/{batch}/"',
    'key = prefix + "_index"',
    'name = f"shard-{shard:05d}.parquet"',
    'key = f"{folder}{stamp}-{digest}.ckpt.jsonl"',
    'key = f"{prefix}/instances.json"',
    'key = f"{prefix}/files/md5/{md5[:2]}/{md5[2:]}"',
])
def test_the_key_rule_catches_a_planted_violation(planted: str) -> None:
    assert key_building(planted, _bucket_prefixes()), planted


@pytest.mark.parametrize("benign", [
    '"""Writes runs/<run_id>/summary.json."""',  # a docstring is prose
    'url = f"{base_url}/models"',
    'path = out_dir / "datadocs" / suite',
    'glob = f"{folder}/*.parquet"',
    'help = "source run id (also read from runs/<id>/ paths)"',
    'label = shard_label(shard)',
])
def test_the_key_rule_leaves_other_strings_alone(benign: str) -> None:
    assert key_building(benign, _bucket_prefixes()) == [], benign
