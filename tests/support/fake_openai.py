"""An in-process fake OpenAI-compatible chat server on 127.0.0.1 (for backend tests and bench/served.py).

``FakeChatServer(reply, models=[...], delay_s=...)`` serves ``POST /v1/chat/completions`` and
``GET /v1/models`` (the ids in ``models``); every chat request waits ``delay_s`` (a model's latency),
then ``reply(body, attempt)`` (``attempt``: 1-based count of chat requests so far) returns one of:

* the completion text (200);
* ``(status_code, text)`` — an error answer, with ``retry-after-ms: 20`` so client backoff stays short;
* ``(status_code, text, headers)`` — an error answer with exactly these headers (e.g. ``Retry-After``);
* :data:`DROP` — the connection is closed without an answer (a server that died mid-request).

It records every request body, its arrival time (``arrivals``, ``time.monotonic()``), the number of
requests in flight now (``in_flight``) and the highest number ever in flight at once (``max_in_flight``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DROP = object()  # reply sentinel: close the connection without answering
Reply = Callable[[dict[str, Any], int], Any]


class FakeChatServer:
    def __init__(self, reply: Reply, *, delay_s: float = 0.0, models: tuple[str, ...] = ("fake-model",)):
        self.reply = reply
        self.models = tuple(models)
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.arrivals: list[float] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def base_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> FakeChatServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                return None

            def do_GET(self) -> None:
                if self.path.rstrip("/") != "/v1/models":
                    self.send_error(404)
                    return
                data = json.dumps({"object": "list", "data": [
                    {"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in server.models]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with server._lock:
                    server.requests.append(body)
                    server.arrivals.append(time.monotonic())
                    attempt = len(server.requests)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    result = server.reply(body, attempt)
                    if result is DROP:
                        self.close_connection = True
                        return
                    headers: dict[str, str] = {"retry-after-ms": "20"}
                    if isinstance(result, tuple) and len(result) == 3:
                        status, text, headers = result
                    else:
                        status, text = result if isinstance(result, tuple) else (200, result)
                    if status != 200:
                        payload = {"error": {"message": text, "type": "server_error"}}
                    else:
                        n = int(body.get("n") or 1)
                        payload = {
                            "id": f"chatcmpl-{attempt}",
                            "object": "chat.completion",
                            "created": 0,
                            "model": body.get("model", ""),
                            "choices": [
                                {"index": i, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}
                                for i in range(n)
                            ],
                            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                        }
                    data = json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    if status != 200:
                        for name, value in headers.items():
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test): nothing to answer
                finally:
                    with server._lock:
                        server._in_flight -= 1

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
