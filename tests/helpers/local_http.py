"""A loopback HTTP server for download tests: `serve(handler, **attributes)` yields it with `.url` set."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any


def serve(handler: type, **attributes: Any) -> Iterator[http.server.ThreadingHTTPServer]:
    """Run `handler` on 127.0.0.1 (a free port) in a daemon thread; attributes are set on the server for the
    handler to read. Use as the body of a yield fixture: shut down when the fixture ends."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    for key, value in attributes.items():
        setattr(srv, key, value)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)
