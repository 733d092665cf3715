"""A small headless-Chromium driver over the DevTools protocol (for the UI browser tests).

Starts Debian's ``/usr/bin/chromium`` headless with a fresh profile and ``--remote-debugging-port=0``,
reads the port Chromium picked from ``<profile>/DevToolsActivePort``, and talks to it over one
websocket (``websockets`` sync client) with flattened target sessions. Only what the tests need:
open a page, navigate, evaluate JavaScript, type text, wait for a condition, take a PNG screenshot, and
sign into Airflow through its own login form (:func:`sign_in`).

The browser is stopped by its own pid (and its process group, which it leads) on :meth:`close`.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
]


class CDPError(RuntimeError):
    pass


class Browser:
    """One headless Chromium process and the websocket to its browser target."""

    def __init__(self, binary: str = CHROMIUM, width: int = 1440, height: int = 900) -> None:
        self.binary = binary
        self.width, self.height = width, height
        self.profile = Path(tempfile.mkdtemp(prefix="chromium-profile-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self._ws: Any = None
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, timeout_s: float = 30.0) -> Browser:
        log = open(self.profile / "chromium.log", "wb")
        try:
            self.proc = subprocess.Popen(
                [self.binary, *FLAGS, f"--user-data-dir={self.profile}",
                 f"--window-size={self.width},{self.height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited ({self.proc.returncode}):\n{self.log_tail()}")
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) >= 2:
                self._ws = connect(f"ws://127.0.0.1:{int(lines[0])}{lines[1]}", max_size=64 * 2**20,
                                   open_timeout=10)
                return self
            time.sleep(0.1)
        raise CDPError(f"chromium did not open its DevTools port in {timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return "\n".join((self.profile / "chromium.log").read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return ""

    def close(self) -> None:
        if self._ws is not None:
            try:
                self.send("Browser.close", timeout_s=5)
            except Exception:  # noqa: BLE001, S110 - the browser may already be gone; it is killed below either way
                pass
            self._ws.close()
            self._ws = None
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # Chromium leads its own process group
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- protocol --------------------------------------------------------------------------------
    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:
        """Send one command and wait for its reply (events that arrive meanwhile are kept)."""
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self._ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"{method}: no reply in {timeout_s:.0f}s")
            reply = json.loads(self._ws.recv(timeout=left))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    """One tab, addressed through its flattened session id."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30.0) -> dict[str, Any]:
        return self.browser.send(method, params, self.session, timeout_s)

    def goto(self, url: str, timeout_s: float = 30.0) -> None:
        """Navigate and wait until the document has loaded."""
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise CDPError(f"navigation to {url} failed: {result['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout_s, what=f"{url} to load")

    def evaluate(self, expression: str, timeout_s: float = 30.0) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, timeout_s)
        if "exceptionDetails" in result:
            raise CDPError(f"javascript error in {expression[:80]!r}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 30.0, what: str = "", interval_s: float = 0.25) -> Any:
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        value: Any = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except CDPError:  # the context is being replaced by a navigation: try again
                value = None
            if value:
                return value
            time.sleep(interval_s)
        raise CDPError(f"timed out after {timeout_s:.0f}s waiting for {what or expression} "
                       f"(at {self.url()}; page text: {self.text()[:300]!r})")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type like a user (real input events, so React sees them)."""
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              f" if (!e) return false; e.focus(); e.select && e.select(); return true; }})()")
        if not found:
            raise CDPError(f"no element matches {selector!r} at {self.url()}")
        self.send("Input.insertText", {"text": text})

    def click(self, selector: str) -> None:
        found = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                              f" if (!e) return false; e.click(); return true; }})()")
        if not found:
            raise CDPError(f"no element matches {selector!r} at {self.url()}")

    def url(self) -> str:
        try:
            return str(self.evaluate("location.href"))
        except CDPError:
            return "?"

    def text(self) -> str:
        try:
            return str(self.evaluate("document.body ? document.body.innerText : ''") or "")
        except CDPError:
            return ""

    def cookies(self) -> list[dict[str, Any]]:
        return list(self.send("Network.getCookies").get("cookies", []))

    def screenshot(self, path: str | Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png"})["data"]
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out


def sign_in(page: Page, base: str, username: str, password: str, timeout_s: float = 60.0) -> None:
    """Sign into the Airflow UI at ``base`` through its login form, as a user would; afterwards the
    browser holds the ``_token`` session cookie that the UI and the HopChain plugin read."""
    page.goto(f"{base}/auth/login")
    page.wait_for("!!document.querySelector('input[name=\"password\"]')", timeout_s, what="the login form")
    page.type_into('input[name="username"]', username)
    page.type_into('input[name="password"]', password)
    page.wait_for("!document.querySelector('button[type=\"submit\"]').disabled", 10, what="Sign in enabled")
    page.click('button[type="submit"]')
    page.wait_for("!location.pathname.startsWith('/auth/')", timeout_s, what="the redirect after signing in")
    if not [c for c in page.cookies() if c["name"] == "_token"]:
        raise CDPError("signing in did not set the _token cookie")
