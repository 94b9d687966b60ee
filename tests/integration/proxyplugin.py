"""A plugin for the ``proxy.py`` forward proxy the proxy tests start (not a test module).

It gives the proxy names that nothing else resolves: ``*.internal`` is 127.0.0.1 for
the proxy only, so a server under such a name is reachable only through the proxy.  And
it writes one line per upstream connection it opens (``CONNECT host:port`` for a tunnel,
``POST host:port/path`` for a forwarded request) to the file named by ``$PROXY_TEST_LOG``: the
evidence of what went through the proxy, and how many tunnels were opened.
"""

from __future__ import annotations

import os
from typing import Any

from proxy.http.proxy import HttpProxyBasePlugin


class InternalNames(HttpProxyBasePlugin):  # type: ignore[misc]
    def resolve_dns(self, host: str, port: int) -> tuple[str | None, Any]:
        if host.endswith(".internal"):
            return "127.0.0.1", None
        return None, None

    def before_upstream_connection(self, request: Any) -> Any:
        log_file = os.environ.get("PROXY_TEST_LOG")
        if log_file:
            method = request.method.decode()
            path = "" if method == "CONNECT" else (request.path or b"").decode()
            line = f"{method} {request.host.decode()}:{request.port}{path}\n"
            with open(log_file, "a") as log:  # one short append: whole lines across workers
                log.write(line)
        return request
