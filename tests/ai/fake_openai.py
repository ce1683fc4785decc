"""A tiny OpenAI-compatible HTTP server for tests (stdlib only, bound to 127.0.0.1).

It answers ``/chat/completions`` (plain, ``response_format`` structured output, tool calls, SSE streaming),
``/embeddings``, ``/files`` and ``/batches``. Token counts are fixed per endpoint so tests can pin costs.
Scripted failures: ``server.fail_next(status, times)`` answers the next ``times`` requests with ``status``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CHAT_USAGE = {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
EMBED_USAGE = {"prompt_tokens": 8, "total_tokens": 8}
BATCH_USAGE = {"prompt_tokens": 200, "completion_tokens": 100, "total_tokens": 300}


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server:``; ``server.api_base`` is the URL to pass to litellm."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[int] = deque()
        self.replies: deque[dict[str, Any]] = deque()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_status = "completed"
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def fail_next(self, status: int, times: int = 1) -> None:
        self.failures.extend([status] * times)

    def reply_next(self, **message: Any) -> None:
        """Queue an assistant message (``content=...`` or ``tool_calls=[...]``) for the next chat request."""
        self.replies.append(message)

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    # -- request handling ------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                return

            def do_GET(self) -> None:
                server._dispatch(self, "GET", None)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server._dispatch(self, "POST", raw)

        return Handler

    def _dispatch(self, h: BaseHTTPRequestHandler, method: str, raw: bytes | None) -> None:
        path = h.path.split("?")[0]
        if path.startswith("/v1/"):
            path = path[3:]
        content_type = h.headers.get("Content-Type", "")
        body: Any = None
        if raw and content_type.startswith("application/json"):
            body = json.loads(raw)
        with self._lock:
            self.requests.append({"method": method, "path": path, "body": body})
            status = self.failures.popleft() if self.failures else None
        if status is not None:
            self._json(h, status, {"error": {"message": f"fake failure {status}", "type": "server_error"}})
            return
        if method == "POST" and path == "/chat/completions":
            self._chat(h, body)
        elif method == "POST" and path == "/embeddings":
            self._embeddings(h, body)
        elif method == "POST" and path == "/files":
            self._upload(h, raw or b"", content_type)
        elif method == "GET" and path.startswith("/files/") and path.endswith("/content"):
            file_id = path.split("/")[2]
            self._raw(h, 200, self.files[file_id], "application/octet-stream")
        elif method == "POST" and path == "/batches":
            self._create_batch(h, body)
        elif method == "GET" and path.startswith("/batches/"):
            batch = dict(self.batches[path.split("/")[2]])
            batch["status"] = self.batch_status
            if self.batch_status != "completed":
                batch["output_file_id"] = None
            self._json(h, 200, batch)
        else:
            self._json(h, 404, {"error": {"message": f"no route {method} {path}"}})

    def _message_for(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self.replies:
                return {"role": "assistant", "content": None, **self.replies.popleft()}
        fmt = body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            props = fmt["json_schema"]["schema"].get("properties", {})
            sample = {name: _sample(spec) for name, spec in props.items()}
            return {"role": "assistant", "content": json.dumps(sample)}
        last = body["messages"][-1]
        text = last.get("content") if isinstance(last.get("content"), str) else "..."
        return {"role": "assistant", "content": f"echo: {text}"}

    def _chat(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        message = self._message_for(body)
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        if body.get("stream"):
            self._stream(h, body, message.get("content") or "")
            return
        self._json(
            h,
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": CHAT_USAGE,
            },
        )

    def _stream(self, h: BaseHTTPRequestHandler, body: dict[str, Any], text: str) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        pieces = [text[i : i + 5] for i in range(0, len(text), 5)]
        for i, piece in enumerate(pieces):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            h.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        h.wfile.write(f"data: {json.dumps(end)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            usage = {**base, "choices": [], "usage": CHAT_USAGE}
            h.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
        h.close_connection = True

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        dims = body.get("dimensions") or 3
        data = [
            {"object": "embedding", "index": i, "embedding": [round(0.1 * (i + 1), 3)] * dims}
            for i in range(len(inputs))
        ]
        self._json(h, 200, {"object": "list", "data": data, "model": body["model"], "usage": EMBED_USAGE})

    def _upload(self, h: BaseHTTPRequestHandler, raw: bytes, content_type: str) -> None:
        boundary = content_type.split("boundary=")[1].encode()
        content = b""
        for part in raw.split(b"--" + boundary):
            if b'name="file"' in part:
                content = part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0]
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = content
        self._json(h, 200, _file_object(file_id, len(content), "batch"))

    def _create_batch(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        batch_id = f"batch_{len(self.batches) + 1}"
        lines = [json.loads(line) for line in self.files[body["input_file_id"]].decode().splitlines() if line]
        out = []
        for line in lines:
            if line["custom_id"].startswith("fail"):
                out.append({"id": "r", "custom_id": line["custom_id"], "response": None, "error": {"message": "bad"}})
                continue
            response = {
                "status_code": 200,
                "body": {
                    "id": "chatcmpl-batch",
                    "object": "chat.completion",
                    "model": line["body"]["model"],
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"batch: {line['custom_id']}"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": BATCH_USAGE,
                },
            }
            out.append({"id": "r", "custom_id": line["custom_id"], "response": response, "error": None})
        output_id = f"file-out-{batch_id}"
        self.files[output_id] = "\n".join(json.dumps(o) for o in out).encode()
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": body["endpoint"],
            "input_file_id": body["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": output_id,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": len(lines), "failed": 0},
        }
        batch = dict(self.batches[batch_id])
        self._json(h, 200, batch)

    # -- responses -------------------------------------------------------------------------------------------

    def _json(self, h: BaseHTTPRequestHandler, status: int, payload: Any) -> None:
        self._raw(h, status, json.dumps(payload).encode(), "application/json")

    def _raw(self, h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        if status == 429:
            h.send_header("Retry-After", "0")
        h.end_headers()
        h.wfile.write(data)


def _file_object(file_id: str, size: int, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": "batch.jsonl",
        "purpose": purpose,
        "status": "processed",
    }


def _sample(spec: dict[str, Any]) -> Any:
    kind = spec.get("type")
    if kind == "integer":
        return 7
    if kind == "number":
        return 1.5
    if kind == "boolean":
        return True
    if kind == "array":
        return [_sample(spec.get("items", {"type": "string"}))]
    return "fake"
