"""``failback serve``: the HTTP API, the live dashboard and /metrics (thin: see failback.api)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from failback.cli.context import load
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
) -> int:
    """Serve the HTTP API, the live dashboard (/) and Prometheus metrics (/metrics).

    Endpoints that change things need `Authorization: Bearer TOKEN`, the token being
    $FAILBACK_API_TOKEN or the content of the topology's api.token_file.
    """
    from failback.api import ApiServer, resolve_settings

    topology = load(config)
    settings = resolve_settings(
        topology, state_dir=state_dir, listen=listen, tls_cert=tls_cert, tls_key=tls_key
    )
    server = ApiServer(settings)
    if settings.token is None:
        stderr.print(
            "warning: no API token ($FAILBACK_API_TOKEN or api.token_file): read-only,"
            " every request that changes something is refused",
            style="yellow",
            markup=False,
        )
    if not settings.loopback_only and settings.tls_cert is None:
        stderr.print(
            f"warning: listening on {settings.host} without TLS: the token crosses the"
            " network in clear; give --tls-cert and --tls-key",
            style="yellow",
            markup=False,
        )
    stderr.print(
        f"failback serve: {settings.scheme}://{settings.host}:{settings.port}/ "
        f"(API /api/v1, OpenAPI /openapi.json, metrics /metrics; token: "
        f"{settings.token_source})",
        markup=False,
        highlight=False,
    )
    server.run()
    executing = server.app.state.failback.launcher.executing()
    if executing:
        ids = ", ".join(str(i) for i in executing)
        stderr.print(
            f"runs {ids} were executing: they are interrupted; continue with failback resume",
            style="yellow",
            markup=False,
        )
    return 0
