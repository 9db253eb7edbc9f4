"""The standard library's threading HTTP server, without its reverse DNS lookup.

``http.server.HTTPServer.server_bind`` sets ``server_name`` from
``socket.getfqdn(address)``: a reverse lookup of the address it binds. On a machine
whose resolver does not answer (a network namespace, a site cut off, a production
network without reverse zones) that lookup blocks for the resolver's timeouts (2 x 5 s
with glibc's defaults) before the server listens: measured at 10 s for the failsafe
server of a monitor on the netns lab. Nothing failback serves uses ``server_name``.
"""

from __future__ import annotations

import socketserver
from http.server import ThreadingHTTPServer


class LocalHTTPServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that names itself by the address it binds."""

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
