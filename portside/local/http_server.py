"""The HTTP server under both local entry points: ``portside serve`` and the upload host.

cheroot's defaults suit a small intranet service, not a registry that real clients push to:

* Its listen backlog is 5. docker pushes five layers at once, each on its own connection,
  and a CI runner or a load test opens dozens: connections beyond the backlog are dropped
  by the kernel and the client sees a timeout (the SYN is retried after 1, 3, 7 s). The
  backlog here holds far more than any client opens; connections wait in it until a worker
  thread is free instead of being dropped.
* It keeps a connection open after a request whose chunked body it did not read to the end
  (cheroot drains only ``Content-Length`` bodies). The unread chunks are then parsed as the
  next request on the connection: a body the application refused before reading (an
  authorization failure, a malformed chunk, a request with both ``Transfer-Encoding`` and
  ``Content-Length``) would turn into a second, smuggled request. RFC 9112 (6.3) asks the
  server to close such a connection after answering; ``FramingGateway`` does.
"""

from __future__ import annotations

from typing import Any

from cheroot import wsgi

# socket.listen()'s backlog; Linux caps it at net.core.somaxconn (4096 by default).
LISTEN_BACKLOG = 1024
# Worker threads of `portside serve`: each holds one request while it runs (an upload body
# for its whole transfer, with up to one part in memory), so this is how many requests run
# at once: a few clients pushing five layers each. More wait in the backlog, and idle
# keep-alive connections hold no thread.
DEFAULT_THREADS = 32
# Large layers stream through one request: do not cut slow uploads off.
SOCKET_TIMEOUT = 300


class FramingGateway(wsgi.Gateway_10):
    """cheroot's WSGI 1.0 gateway, except that a connection whose chunked request body was
    not read to its last chunk is closed after the answer instead of being reused."""

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Any:
        request = self.req
        # ChunkedRFile sets ``closed`` once it has read the terminating zero-size chunk; a
        # body read only in part, or one that was not validly chunked, leaves it unset.
        if request.chunked_read and not getattr(request.rfile, "closed", False):
            request.close_connection = True  # cheroot then also says Connection: close
        return super().start_response(status, headers, exc_info)


def wsgi_server(host: str, port: int, app: Any, threads: int) -> wsgi.Server:
    """A cheroot server for ``app`` sized for registry clients' parallelism."""
    server = wsgi.Server((host, port), app, numthreads=threads, request_queue_size=LISTEN_BACKLOG)
    server.gateway = FramingGateway
    server.timeout = SOCKET_TIMEOUT
    return server
