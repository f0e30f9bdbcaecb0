"""A FAKE of Supabase Storage's HTTP API (the object endpoints the listener uses), for
testing our adapter with the real `supabase` client: the real service cannot be
reached from here. Objects are kept in memory; given a database, the fake also writes
and removes their rows in `storage.objects` as the Storage API does (logged in as
supabase_storage_admin, each request one transaction scoped to the service role with
`storage.allow_delete_query` on), so the listener's cleanup can be checked against
the database end to end. It records each request.

Mirrored from supabase/storage (refusals rendered as src/internal/errors/
storage-error.ts `render()` and src/http/error-handler.ts send them: HTTP 400, the
real status in the body's `statusCode`):
- src/storage/limits.ts `isValidKey`: keys of S3-safe characters only, else
  `InvalidKey` ("Invalid key: <key>", statusCode 400);
- src/internal/errors/codes.ts: `NoSuchBucket` (404, "Bucket not found"),
  `NoSuchKey` (404, error "not_found", "Object not found"), `ResourceAlreadyExists`
  (409, error "Duplicate", "The resource already exists") for an upload onto an
  existing object without `x-upsert: true`;
- src/http/routes/object/deleteObjects.ts: `prefixes` required, at least one (a
  schema validation failure: HTTP 400, code `InvalidRequest` from codes.ts
  `ERROR_CODE_MAP`; the `error` and `message` texts here are ours, not fastify's);
  the reply lists the objects removed, nothing for keys that were not there;
- src/storage/object.ts `deleteObjects`: rows deleted, then the files, in one
  transaction;
- src/http/routes/object/getSignedURL.ts and getSignedObject.ts: `POST
  /object/sign/<bucket>/<key>` with `expiresIn` answers `{"signedURL":
  "/object/sign/<bucket>/<key>?token=..."}` (NoSuchKey for a missing object), and a
  GET of that path with its token serves the object until the token expires. The
  token here is an opaque random string, not the real JWT.
Not mirrored: JWT verification (the fake trusts the bearer token it is given) and
RLS for user tokens (the listener only ever uses the service key)."""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg

from listener.database import QUERIES

PREFIX = "/storage/v1/object/"
VALID_KEY = re.compile(r"[A-Za-z0-9_/!.*'() &$=@;:+,?-]+")  # limits.ts VALID_OBJECT_KEY


class FakeStorage:
    def __init__(
        self,
        buckets: tuple[str, ...] = ("references", "generations"),
        database_url: str | None = None,
    ) -> None:
        self.buckets = set(buckets)
        self.database_url = database_url
        self.objects: dict[tuple[str, str], bytes] = {}
        self.content_types: dict[tuple[str, str], str] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.signed: dict[str, tuple[str, str, float]] = {}  # token: bucket, key, expiry

    def rows(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One Storage API request's transaction; nothing when there is no database."""
        if self.database_url is None:
            return []
        with psycopg.connect(self.database_url) as conn, conn.transaction():
            conn.execute(QUERIES["storage_api_scope"].encode())
            cursor = conn.execute(sql.encode(), params)
            return cursor.fetchall() if cursor.description else []


def _refusal(status: str, code: str, error: str, message: str) -> dict[str, str]:
    return {"statusCode": status, "code": code, "error": error, "message": message}


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
            path = path.removeprefix(PREFIX + "sign/").removeprefix(PREFIX)
            bucket, _, key = path.partition("/")
            return unquote(bucket), unquote(key)  # route parameters arrive decoded

        def _refused(self, bucket: str, key: str | None) -> bool:
            """Replies with the Storage API's refusal of a bucket or key, if any."""
            if bucket not in storage.buckets:
                self._reply(
                    400, _refusal("404", "NoSuchBucket", "Bucket not found", "Bucket not found")
                )
                return True
            if key is not None and not VALID_KEY.fullmatch(key):
                self._reply(400, _refusal("400", "InvalidKey", "InvalidKey", f"Invalid key: {key}"))
                return True
            return False

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

        def _sign(self) -> None:
            bucket, key = self._target()
            expires_in = int(json.loads(self._body() or b"{}").get("expiresIn", 0))
            if self._refused(bucket, key):
                return
            if (bucket, key) not in storage.objects:
                self._reply(400, _refusal("404", "NoSuchKey", "not_found", "Object not found"))
                return
            token = secrets.token_urlsafe(24)
            storage.signed[token] = (bucket, key, time.time() + expires_in)
            self._reply(200, {"signedURL": f"/object/sign/{bucket}/{key}?token={token}"})

        def _signed_object(self) -> None:
            bucket, key = self._target()
            token = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
            grant = storage.signed.get(token)
            if grant is None or grant[:2] != (bucket, key) or grant[2] < time.time():
                self._reply(400, _refusal("400", "InvalidJWT", "Invalid JWT", "jwt expired"))
                return
            found = storage.objects.get((bucket, key))
            if found is None:
                self._reply(400, _refusal("404", "NoSuchKey", "not_found", "Object not found"))
            else:
                self._reply(200, found)

        def do_POST(self) -> None:
            self._record()
            if self.path.startswith(PREFIX + "sign/"):
                self._sign()
                return
            bucket, key = self._target()
            data, content_type = self._file()  # read before any reply, as a server does
            if self._refused(bucket, key):
                return
            if (bucket, key) in storage.objects and self.headers.get("x-upsert") != "true":
                self._reply(
                    400,
                    _refusal(
                        "409", "ResourceAlreadyExists", "Duplicate", "The resource already exists"
                    ),
                )
                return
            storage.rows(
                QUERIES["storage_api_upsert_object"],
                {
                    "bucket": bucket,
                    "object_key": key,
                    "size_bytes": len(data),
                    "mimetype": content_type,
                    "version": str(uuid.uuid4()),
                },
            )
            storage.objects[(bucket, key)], storage.content_types[(bucket, key)] = (
                data,
                content_type,
            )
            self._reply(200, {"Key": f"{bucket}/{key}", "Id": "fake"})

        do_PUT = do_POST

        def do_GET(self) -> None:
            self._record()
            if self.path.startswith(PREFIX + "sign/"):
                self._signed_object()
                return
            bucket, key = self._target()
            if self._refused(bucket, key):
                return
            found = storage.objects.get((bucket, key))
            if found is None:
                self._reply(400, _refusal("404", "NoSuchKey", "not_found", "Object not found"))
            else:
                self._reply(200, found)

        def do_DELETE(self) -> None:
            self._record()
            bucket, _ = self._target()
            body = self._body()
            if self._refused(bucket, None):
                return
            prefixes = json.loads(body or b"{}").get("prefixes")
            if not isinstance(prefixes, list) or not prefixes:
                self._reply(
                    400,
                    _refusal(
                        "400",
                        "InvalidRequest",
                        "Bad Request",
                        "body/prefixes must NOT have fewer than 1 items",
                    ),
                )
                return
            storage.rows(
                QUERIES["storage_api_delete_objects"], {"bucket": bucket, "object_keys": prefixes}
            )
            removed = [p for p in prefixes if storage.objects.pop((bucket, p), None) is not None]
            for p in removed:
                storage.content_types.pop((bucket, p), None)
            self._reply(200, [{"name": p} for p in removed])

    return Handler


@contextmanager
def fake_supabase_storage(
    database_url: str | None = None,
) -> Iterator[tuple[str, FakeStorage]]:
    storage = FakeStorage(database_url=database_url)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(storage))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", storage
    finally:
        server.shutdown()
        server.server_close()
