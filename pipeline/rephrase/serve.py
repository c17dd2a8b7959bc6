"""A small OpenAI-compatible HTTP server over any engine (stdlib ``http.server``).

For development and tests: it serves ``POST /v1/completions``,
``POST /v1/chat/completions``, ``GET /v1/models`` and ``GET /health`` from an
:class:`~pipeline.rephrase.engines.Engine` (typically a small ``transformers``
model), so the ``openai`` backend can be exercised end to end on loopback. For
production serving use ``vllm serve``.

Requests are handled on threads; generation is serialised by a lock (one model,
one request at a time). Fault injection for client tests: ``fail_first`` answers
the first N generation requests with HTTP 500, ``delay_first`` sleeps
``delay_s`` before answering the first N, and ``fail_marker`` answers 500 to every
prompt containing that string.

>>> # server = OpenAICompatServer(engine).start(); server.base_url -> "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

from .engines.base import Engine, SamplingConfig
from .errors import EngineError

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 2**20


class OpenAICompatServer:
    """Serve ``engine`` on ``host:port`` (port 0 picks a free one).

    Args:
        engine: the engine answering requests.
        model_name: the model id reported and accepted (any ``model`` is accepted).
        api_key: when set, requests must send ``Authorization: Bearer <api_key>``.
        fail_first, delay_first, delay_s, fail_marker: fault injection (see module docstring).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model_name: Optional[str] = None,
        api_key: Optional[str] = None,
        fail_first: int = 0,
        delay_first: int = 0,
        delay_s: float = 0.0,
        fail_marker: Optional[str] = None,
    ):
        self.engine = engine
        self.model_name = model_name or engine.model_name
        self.api_key = api_key
        self.fail_first = fail_first
        self.delay_first = delay_first
        self.delay_s = delay_s
        self.fail_marker = fail_marker
        self.requests = 0  # generation requests received
        self._count_lock = threading.Lock()
        self._gen_lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, port), self._handler())
        self._httpd.daemon_threads = True
        self._thread: Optional[threading.Thread] = None

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OpenAICompatServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "OpenAICompatServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Block serving requests (CLI use); Ctrl-C stops."""
        try:
            self._httpd.serve_forever(poll_interval=0.5)
        finally:
            self._httpd.server_close()

    # -- request handling ---------------------------------------------------------

    def _complete(self, body: dict[str, Any], chat: bool) -> tuple[int, dict[str, Any]]:
        with self._count_lock:
            self.requests += 1
            nth = self.requests
        if nth <= self.delay_first:
            time.sleep(self.delay_s)
        if nth <= self.fail_first:
            return 500, {"error": {"message": f"injected failure {nth}/{self.fail_first}", "type": "server_error"}}
        if chat:
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                return 400, {"error": {"message": "'messages' must be a non-empty list", "type": "invalid_request_error"}}
            prompt: Any = messages
            text_for_marker = json.dumps(messages, ensure_ascii=False)
        else:
            prompt = body.get("prompt")
            if isinstance(prompt, list) and len(prompt) == 1:
                prompt = prompt[0]
            if not isinstance(prompt, str):
                return 400, {"error": {"message": "'prompt' must be a string", "type": "invalid_request_error"}}
            text_for_marker = prompt
        if self.fail_marker and self.fail_marker in text_for_marker:
            return 500, {"error": {"message": "injected failure (marker)", "type": "server_error"}}
        try:
            stop = body.get("stop") or []
            sampling = SamplingConfig(
                temperature=float(body.get("temperature", 1.0)),
                top_p=float(body.get("top_p", 1.0)),
                top_k=int(body.get("top_k", -1)),
                max_tokens=int(body.get("max_tokens") or 16),
                repetition_penalty=float(body.get("repetition_penalty", 1.0)),
                stop=[stop] if isinstance(stop, str) else list(stop),
                ignore_eos=bool(body.get("ignore_eos", False)),
                seed=int(body.get("seed") or 0),
            )
        except (ValueError, TypeError) as exc:
            return 400, {"error": {"message": f"bad sampling parameters: {exc}", "type": "invalid_request_error"}}
        try:
            with self._gen_lock:
                g = self.engine.generate([prompt], sampling, [sampling.seed])[0]
        except EngineError as exc:
            return 500, {"error": {"message": str(exc), "type": "server_error"}}
        choice: dict[str, Any] = {"index": 0, "finish_reason": g.finish_reason, "logprobs": None}
        if chat:
            choice["message"] = {"role": "assistant", "content": g.text}
        else:
            choice["text"] = g.text
        return 200, {
            "id": f"cmpl-{uuid.uuid4().hex[:16]}",
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [choice],
            "usage": {
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                "total_tokens": g.prompt_tokens + g.completion_tokens,
            },
        }

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # route access logs to logging, not stderr
                logger.debug("%s " + fmt, self.address_string(), *args)

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                if not server.api_key:
                    return True
                if self.headers.get("Authorization") == f"Bearer {server.api_key}":
                    return True
                self._send(401, {"error": {"message": "invalid API key", "type": "authentication_error"}})
                return False

            def do_GET(self):
                if self.path.rstrip("/") == "/health":
                    return self._send(200, {"status": "ok"})
                if not self._authorized():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    return self._send(200, {"object": "list", "data": [{"id": server.model_name, "object": "model"}]})
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

            def do_POST(self):
                if not self._authorized():
                    return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY:
                    return self._send(413 if length > MAX_BODY else 400, {"error": {"message": "bad Content-Length"}})
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise ValueError("body must be a JSON object")
                except ValueError as exc:
                    return self._send(400, {"error": {"message": f"invalid JSON: {exc}", "type": "invalid_request_error"}})
                path = self.path.rstrip("/")
                if path == "/v1/completions":
                    status, payload = server._complete(body, chat=False)
                elif path == "/v1/chat/completions":
                    status, payload = server._complete(body, chat=True)
                else:
                    status, payload = 404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
                try:
                    self._send(status, payload)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to do
                    logger.debug("client went away before the response")

        return Handler
