"""The upload host: the streaming half of /v2/ as a plain HTTP service.

API Gateway caps request bodies at 10 MB and a synchronous Lambda at 6 MB, while docker,
podman and skopeo send a whole layer in one PATCH and containerd in one PUT. Upload
``Location``s therefore point here (``PORTSIDE_UPLOAD_URL``): this process streams those
bodies into S3 multipart parts with memory bounded by one part, through the same
dispatcher the Lambda uses. Everything else answers 404; ``/healthz`` answers 200 for the
load balancer.

Run: ``python -m portside.upload_host`` (``PORT``, default 8080), as the container does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from chalicelib.wiring import v2_api
from portside.local.gateway import (
    StartResponse,
    framing_refusal,
    is_upload_body,
    reply,
    wsgi_request,
)
from portside.local.http_server import wsgi_server

NOT_FOUND = json.dumps(
    {"errors": [{"code": "NOT_FOUND", "message": "this host serves uploads only", "detail": None}]}
).encode()


def upload_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/healthz":
        return reply(start_response, 200, {"Content-Type": "text/plain"}, b"ok")
    request = wsgi_request(environ)
    refused = framing_refusal(environ, request)
    if refused is not None:
        return reply(start_response, refused.status, refused.headers, refused.body)
    # GET and DELETE of a session come here too: clients keep using the Location they got.
    session_call = request.method in ("GET", "DELETE") and "/blobs/uploads/" in request.path
    if not (is_upload_body(request.method, request.path, request.query) or session_call):
        return reply(start_response, 404, {"Content-Type": "application/json"}, NOT_FOUND)
    response = v2_api().handle(request)
    return reply(start_response, response.status, response.headers, response.body)


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    # Each running upload holds up to one part in memory: the deployment sizes THREADS with
    # the task's memory. Connections beyond the threads wait in the listen backlog.
    threads = int(os.environ.get("THREADS", "16"))
    server = wsgi_server("0.0.0.0", port, upload_app, threads)
    print(f"Portside upload host listening on :{port}", flush=True)
    server.safe_start()


if __name__ == "__main__":
    main()
