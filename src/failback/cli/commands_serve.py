"""``failback serve``: the HTTP API, the live dashboard and /metrics (thin: see failback.api)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from failback.cli.context import load
from failback.cli.logs import LogFormat, LogFormatOpt
from failback.cli.options import ConfigOpt, StateDirOpt
from failback.cli.output import stderr


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    listen: Annotated[
        str | None,
        typer.Option(
            "--listen",
            help="HOST:PORT [default: api.listen of the topology, else 127.0.0.1:8080]",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate: serve HTTPS")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM key of --tls-cert")] = None,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    log_format: LogFormatOpt = LogFormat.text,
) -> int:
    """Serve the HTTP API, the live dashboard (/) and Prometheus metrics (/metrics).

    Endpoints that change things need `Authorization: Bearer TOKEN`, the token being
    $FAILBACK_API_TOKEN or the content of the topology's api.token_file. Under systemd
    (`Type=notify`) it sends READY=1 once it listens, STOPPING=1 when it stops, and
    with WatchdogSec= WATCHDOG=1 each time its own /api/v1/health answers in time.
    """
    from failback.api import ApiServer, resolve_settings

    topology = load(config)
    settings = resolve_settings(
        topology, state_dir=state_dir, listen=listen, tls_cert=tls_cert, tls_key=tls_key
    )
    as_json = log_format == LogFormat.json
    if as_json:
        from failback.cli.logs import configure
        from failback.model.secrets import Redactor

        configure("json", Redactor.for_topology(topology, settings.token).text)
    server = ApiServer(settings, own_logging=not as_json)
    if settings.token is None:
        _tell(
            "warning: no API token ($FAILBACK_API_TOKEN or api.token_file): read-only,"
            " every request that changes something is refused",
            as_json,
        )
    if not settings.loopback_only and settings.tls_cert is None:
        _tell(
            f"warning: listening on {settings.host} without TLS: the token crosses the"
            " network in clear; give --tls-cert and --tls-key",
            as_json,
        )
    _tell(
        f"failback serve: {settings.scheme}://{settings.host}:{settings.port}/ "
        f"(API /api/v1, OpenAPI /openapi.json, metrics /metrics; token: "
        f"{settings.token_source})",
        as_json,
    )
    watcher = _readiness(server)
    try:
        server.run()
    finally:
        watcher.set()
    executing = server.app.state.failback.launcher.executing()
    if executing:
        ids = ", ".join(str(i) for i in executing)
        _tell(
            f"runs {ids} were executing: they are interrupted; continue with failback resume",
            as_json,
            warning=True,
        )
    return 0


def _tell(message: str, as_json: bool, *, warning: bool = False) -> None:
    """An operator's line: on stderr for a person, a JSON log record under --log-format json."""
    warning = warning or message.startswith("warning: ")
    if as_json:
        import logging

        from failback.cli.logs import say

        say(message.removeprefix("warning: "), level=logging.WARNING if warning else logging.INFO,
            logger="failback.serve")  # fmt: skip
        return
    style = "yellow" if warning else None
    stderr.print(message, style=style, markup=False, highlight=False)


def _readiness(server: Any) -> threading.Event:
    """Tell systemd READY=1 once uvicorn listens, WATCHDOG=1 while it answers (when the
    unit sets ``WatchdogSec=``), and STOPPING=1 once it is asked to stop.

    uvicorn runs in the foreground (it owns the signals), so a small thread watches its
    ``started`` and ``should_exit`` flags; the returned event ends the thread. The
    watchdog ping is earned, not sent on a timer: the thread asks the server's own
    ``/api/v1/health`` (answered by a worker thread, through the event loop) and pings
    only when it answered within the ping interval. A server whose loop or workers hang
    stops pinging, and systemd restarts it; a thread that merely still runs proves nothing.
    """
    from failback.cli.sdnotify import lifecycle, watchdog_interval

    done = threading.Event()
    interval = watchdog_interval()

    def watch() -> None:
        while not server.server.started:
            if done.wait(0.05):
                return
        lifecycle("ready")
        url = health_url(server.settings.scheme, server.settings.host, server.port)
        next_ping = time.monotonic()
        while not server.server.should_exit and not done.wait(0.1):
            if interval is not None and time.monotonic() >= next_ping:
                next_ping = time.monotonic() + interval
                if answers(url, timeout=interval):
                    lifecycle("alive")
        lifecycle("stopping")

    threading.Thread(target=watch, name="sd-notify", daemon=True).start()
    return done


def health_url(scheme: str, host: str, port: int) -> str:
    """Where this server answers its own health check: a wildcard address is asked on
    the loopback of its family."""
    asked = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    shown = f"[{asked}]" if ":" in asked else asked
    return f"{scheme}://{shown}:{port}/api/v1/health"


def answers(url: str, *, timeout: float) -> bool:
    """``url`` answered 200 within ``timeout`` seconds. The certificate is not checked:
    this is the server asking itself (it sends no token), not a client trusting it."""
    import httpx

    try:
        return httpx.get(url, timeout=timeout, verify=False).status_code == 200
    except httpx.HTTPError:
        return False
