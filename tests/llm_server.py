"""A real OpenAI-compatible HTTP server on loopback, with scripted replies and faults on demand.

Start one with :func:`start_server` and point coach (or any OpenAI client) at its ``base_url``
(pytest puts ``tests/`` on ``sys.path``; elsewhere add it first)::

    from llm_server import start_server

    with start_server() as server:          # http://127.0.0.1:<free port>/v1
        print(server.base_url)              # coach learn --llm --base-url <it> --model any
        ...
        print(len(server.requests))         # chat completion requests received

It answers ``POST /v1/chat/completions`` (and ``GET /v1/models``). By default the reply is a
well-formed skill (:func:`default_skill`) naming the tools (and argument value) of the pattern,
or the first tool of the cluster, in the prompt; pass ``responder`` (request body -> content
string) to script other replies. Faults are queued with :meth:`ScriptedLLM.fail_next`, one per
request, applied in order:

- ``"429"``, ``"500"``, ``"503"``: that HTTP status with an OpenAI-style error body
  (``Retry-After: 0``);
- ``"timeout"``: the server waits ``hang_s`` seconds before answering (longer than the
  client's timeout);
- ``"malformed"``: a 200 whose body is not JSON;
- ``"invalid"``: a 200 whose message content is not the JSON the client asked for;
- ``"refusal"``: a 200 whose message has ``refusal`` set and no content.

``schema_support=False`` makes the server answer 400 to ``response_format`` of type
``json_schema``, like an endpoint without structured outputs. The server runs in a daemon
thread; :meth:`ScriptedLLM.stop` (or leaving the ``with`` block) shuts it down.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["ScriptedLLM", "default_skill", "pattern_of", "start_server"]


def _prompt(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []))


def pattern_of(body: dict[str, Any]) -> dict[str, Any]:
    """What a distillation request is about, read from its prompt: ``kind`` (the pattern's kind,
    or ``"cluster"``), ``direction`` (``harmful`` or ``helpful``; ``harmful`` for a cluster),
    ``tools`` (the pattern's tools: the subject's, and for ``tool_order`` the earlier one first;
    a cluster's first tool), ``arg`` and ``value`` (``write_arg``, else empty)."""
    text = _prompt(body)
    match = re.search(r"Pattern id: (\w+):(.*)", text)
    if match is None:
        named = re.search(r"naming\s+(\w+)", text)
        tools = [named.group(1) if named else "the tool"]
        return {"kind": "cluster", "direction": "harmful", "tools": tools, "arg": "", "value": ""}
    kind, rest = match.group(1), match.group(2).strip()
    arg = value = ""
    if kind == "tool_order":
        tools = re.split(r"-\u203a|->", rest, maxsplit=1)
    elif kind == "write_arg":
        subject, _, value = rest.partition("=")
        tool, _, arg = subject.partition(".")
        tools = [tool]
    else:
        tools = [re.split(r"[:.]", rest, maxsplit=1)[0]]
    effect = re.search(r"Effect on success: (\w+)", text)
    return {
        "kind": kind,
        "direction": effect.group(1) if effect else "",
        "tools": [t.strip() for t in tools],
        "arg": arg,
        "value": value.strip(),
    }


def default_skill(body: dict[str, Any]) -> str:
    """A valid skill as JSON text, naming the tools of the request's pattern (:func:`pattern_of`)
    with its argument and value, or the first tool of its cluster."""
    about = pattern_of(body)
    tools = " and ".join(about["tools"])
    with_arg = f" with {about['arg']} set to {about['value']}" if about.get("arg") else ""
    return json.dumps(
        {
            "instruction": f"Before calling {tools}{with_arg}, restate the request and check "
            "that the policy allows it; ask the user when anything is unclear.",
            "when": f"Whenever the next step would be a call to {about['tools'][-1]}.",
            "rationale": "Runs that did this on the same tasks succeeded more often.",
            "section": "procedures",
        }
    )


class ScriptedLLM:
    """The server (see the module docstring). ``requests`` holds every chat completion request
    body received, in order, including those answered with a fault."""

    def __init__(
        self,
        responder: Callable[[dict[str, Any]], str] | None = None,
        *,
        schema_support: bool = True,
        hang_s: float = 2.0,
    ) -> None:
        self.responder = responder or default_skill
        self.schema_support = schema_support
        self.hang_s = hang_s
        self.requests: list[dict[str, Any]] = []
        self.faults: deque[str] = deque()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    body = {"object": "list", "data": [{"id": "any", "object": "model"}]}
                    self._send(200, json.dumps(body).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                body = json.loads(raw or b"{}")
                status, payload, headers = server._answer(body)
                self._send(status, payload, headers)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, *faults: str) -> None:
        """Queue faults for the next requests, one each (see the module docstring)."""
        with self._lock:
            self.faults.extend(faults)

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answer(self, body: dict[str, Any]) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.requests.append(body)
            fault = self.faults.popleft() if self.faults else None
        error_headers = {"Retry-After": "0"}
        if fault in ("429", "500", "503"):
            error = {"error": {"message": f"scripted {fault}", "type": "server_error"}}
            return int(fault), json.dumps(error).encode(), error_headers
        if fault == "timeout":
            time.sleep(self.hang_s)
        if fault == "malformed":
            return 200, b'{"id": "x", "choices": [ this is not json', {}
        response_format = body.get("response_format") or {}
        if not self.schema_support and response_format.get("type") == "json_schema":
            error = {"error": {"message": "response_format json_schema is not supported"}}
            return 400, json.dumps(error).encode(), {}
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if fault == "refusal":
            message["refusal"] = "I can't help with that."
        elif fault == "invalid":
            message["content"] = "Sure! Here is a better skill: be careful."
        else:
            message["content"] = self.responder(body)
        prompt_tokens = len(_prompt(body)) // 4 + 1
        completion_tokens = len(message["content"] or "") // 4 + 1
        payload = {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", "any"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
        return 200, json.dumps(payload).encode(), {}


def start_server(
    responder: Callable[[dict[str, Any]], str] | None = None,
    *,
    schema_support: bool = True,
    hang_s: float = 2.0,
) -> ScriptedLLM:
    """Start a :class:`ScriptedLLM` on a free loopback port and return it (running)."""
    return ScriptedLLM(responder, schema_support=schema_support, hang_s=hang_s).start()
