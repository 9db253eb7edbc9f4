"""Running the app with uvicorn: in the foreground (``failback serve``) or in a thread
(the monitor's ``--listen``, and the tests, which need a real server on a real port)."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn

from failback.api.app import create_app
from failback.api.settings import ApiSettings
from failback.errors import FailbackError


class ApiServer:
    """One uvicorn server for one app; port 0 picks a free port (see ``url``)."""

    def __init__(
        self, settings: ApiSettings, *, log_level: str = "info", own_logging: bool = True
    ) -> None:
        """``own_logging=False``: uvicorn leaves Python's logging as the caller set it up
        (``--log-format json``), instead of installing its own text handlers."""
        self.settings = settings
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host=settings.host,
            port=settings.port,
            ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
            ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
            log_level=log_level,
            log_config=uvicorn.config.LOGGING_CONFIG if own_logging else None,
            timeout_graceful_shutdown=2,
            server_header=False,
        )
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port actually listened on (the chosen one when asked for 0)."""
        for server in getattr(self.server, "servers", []) or []:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.settings.port

    @property
    def url(self) -> str:
        host = self.settings.host
        shown = f"[{host}]" if ":" in host else host
        return f"{self.settings.scheme}://{shown}:{self.port}"

    def run(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM."""
        self.server.run()

    def start(self, timeout: float = 15.0) -> ApiServer:
        """Serve in a daemon thread; return once listening (FailbackError if it cannot)."""
        self._thread = threading.Thread(target=self.server.run, name="failback-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise FailbackError(
                    f"the API could not listen on {self.settings.host}:{self.settings.port}",
                    hint="is the port in use? choose another with --listen",
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
