"""An in-process fake OpenAI-compatible chat server on 127.0.0.1 (for backend tests).

``FakeChatServer(reply, models=[...])`` serves ``POST /v1/chat/completions`` and ``GET /v1/models``
(the ids in ``models``); ``reply(body, attempt)`` returns
either the completion text, or ``(status_code, text)`` to simulate errors. It records every
request body and the highest number of requests in flight at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any], int], "str | tuple[int, str]"]


class FakeChatServer:
    def __init__(self, reply: Reply, *, delay_s: float = 0.0, models: tuple[str, ...] = ("fake-model",)):
        self.reply = reply
        self.models = tuple(models)
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

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
                    attempt = len(server.requests)
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    if server.delay_s:
                        time.sleep(server.delay_s)
                    result = server.reply(body, attempt)
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
                        self.send_header("retry-after-ms", "20")  # keep client backoff short in tests
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
