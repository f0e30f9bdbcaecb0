"""A FAKE of Supabase Storage's HTTP API (the object endpoints the listener uses), for
testing our adapter with the real `supabase` client: the real service cannot be
reached from here. It keeps objects in memory and records each request."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/storage/v1/object/"


class FakeStorage:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.content_types: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []


def _handler(storage: FakeStorage) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _reply(self, status: int, body: Any) -> None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type",
                "application/octet-stream" if isinstance(body, bytes) else "application/json",
            )
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _target(self) -> tuple[str, str]:
            path = self.path.split("?", 1)[0]
            assert path.startswith(PREFIX), path
            bucket, _, key = path[len(PREFIX) :].partition("/")
            return bucket, key

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def _file(self) -> tuple[bytes, str]:
            """The uploaded bytes: a multipart form's `file` part, as the client sends it."""
            content_type = self.headers.get("Content-Type", "")
            body = self._body()
            if not content_type.startswith("multipart/form-data"):
                return body, content_type
            message = BytesParser(policy=default).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body
            )
            for part in message.iter_parts():
                if part.get_param("name", header="content-disposition") == "file":
                    return part.get_payload(decode=True), part.get_content_type()
            raise AssertionError("multipart upload without a file part")

        def _record(self) -> None:
            storage.requests.append((self.command, self.path, dict(self.headers.items())))

        def do_POST(self) -> None:
            self._record()
            bucket, key = self._target()
            if (bucket, key) in storage.objects and self.headers.get("x-upsert") != "true":
                self._reply(
                    400,
                    {
                        "statusCode": "409",
                        "error": "Duplicate",
                        "message": "The resource already exists",
                    },
                )
                return
            storage.objects[(bucket, key)], storage.content_types[(bucket, key)] = self._file()
            self._reply(200, {"Key": f"{bucket}/{key}", "Id": "fake"})

        do_PUT = do_POST

        def do_GET(self) -> None:
            self._record()
            found = storage.objects.get(self._target())
            if found is None:
                self._reply(
                    400, {"statusCode": "404", "error": "not_found", "message": "Object not found"}
                )
            else:
                self._reply(200, found)

        def do_DELETE(self) -> None:
            self._record()
            bucket, _ = self._target()
            prefixes = json.loads(self._body() or b"{}").get("prefixes", [])
            removed = [p for p in prefixes if storage.objects.pop((bucket, p), None) is not None]
            for p in removed:
                storage.content_types.pop((bucket, p), None)
            self._reply(200, [{"name": p} for p in removed])

    return Handler


@contextmanager
def fake_supabase_storage() -> Iterator[tuple[str, FakeStorage]]:
    storage = FakeStorage()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(storage))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", storage
    finally:
        server.shutdown()
        server.server_close()
