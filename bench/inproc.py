"""The registry in this process: moto in-process (``start_moto``), the table, bucket,
registry and token (``provision``) and the local gateway under cheroot in a thread.

Used where the bench must see inside the registry's process: counting AWS calls.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import requests

from . import awscalls


@dataclass(frozen=True)
class InProcessRegistry:
    url: str
    registry: str
    token: str
    aws_endpoint: str


@contextmanager
def in_process_registry(registry: str = "bench", threads: int = 8) -> Iterator[InProcessRegistry]:
    awscalls.install()  # before the registry creates its clients
    os.environ.setdefault("PORTSIDE_SIGNING_KEY", secrets.token_urlsafe(32))
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")
    from cheroot import wsgi

    from portside.local.runtime import free_port, provision, start_moto

    moto, endpoint = start_moto("127.0.0.1")
    server = None
    try:
        from chalicelib.application import create_app
        from chalicelib.wiring import v2_api
        from portside.local.gateway import LocalGateway

        token = "pst_" + secrets.token_urlsafe(24)
        boot = provision(registry, token)
        port = free_port()
        server = wsgi.Server(
            ("127.0.0.1", port), LocalGateway(create_app, v2_api), numthreads=threads
        )
        server.prepare()
        thread = threading.Thread(target=server.serve, daemon=True, name="bench-registry")
        thread.start()
        url = f"http://127.0.0.1:{port}"
        requests.get(f"{url}/v2/", timeout=10)
        yield InProcessRegistry(url, boot.registry, boot.token, endpoint)
    finally:
        if server is not None:
            server.stop()
        moto.stop()  # type: ignore[attr-defined]
