"""``failback report RUN_ID --format md|html [--out FILE]``: the post-incident report.

A self-contained document a DR team attaches to its incident review (see
``failback.report.incident`` for what it holds, ``failback.report.render`` for how it
looks). Reads the journal only; changes nothing but the file it is asked to write.

Files are written private (0600: step outputs and diverged rows may be sensitive even
with secrets masked), never over an existing file unless ``--force``, and all or
nothing: Markdown with ``--out`` also writes the timeline as a sibling ``.svg`` (the
image link every Markdown viewer renders), and neither file is written when either
exists.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from failback.cli.context import journal_from_options
from failback.cli.options import ConfigOpt, JsonOpt, StateDirOpt
from failback.cli.output import emit_json, stderr, stdout
from failback.config import load_topology_text
from failback.engine.executor import Executor
from failback.errors import FailbackError, UsageError
from failback.model.secrets import Redactor
from failback.store import RunRecord


class Format(StrEnum):
    md = "md"
    html = "html"


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    run_id: Annotated[int, typer.Argument(help="Run id (see `failback runs`)")],
    fmt: Annotated[
        Format,
        typer.Option("--format", help="md (Markdown) or html (one file, inline SVG)"),
    ] = Format.html,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write to FILE (mode 0600) instead of stdout; Markdown also writes the"
            " timeline beside it as FILE's name with .svg",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace --out files that already exist")
    ] = False,
    config: ConfigOpt = None,
    state_dir: StateDirOpt = None,
    as_json: JsonOpt = False,
) -> int:
    """Write a run's post-incident report: header, timeline (SVG), steps, measurements,
    approvals, events, diverged data. Secrets are masked.

    With --json: the report's data as JSON (without --out), or the files written."""
    # the report's modules (models, SVG, HTML) load here, not with every CLI command
    from failback.report.incident import incident_document
    from failback.report.render import render_html, render_markdown

    journal = journal_from_options(config, state_dir)
    run = journal.get_run(run_id)
    doc = incident_document(
        journal,
        run_id,
        redactor=_redactor(run),
        status=Executor(journal).effective_status(run),
    )
    if out is None:
        if as_json:
            emit_json(doc)
        else:
            text = render_html(doc) if fmt is Format.html else render_markdown(doc)
            stdout.out(text, end="", highlight=False)
        return 0
    files = _files(doc, fmt, out)
    _write_all(files, force=force)
    if as_json:
        emit_json({"run_id": run_id, "format": str(fmt), "files": [str(p) for p in files]})
    else:
        for path in files:
            stderr.print(f"wrote {path}", markup=False, highlight=False)
    return 0


def _redactor(run: RunRecord) -> Redactor:
    """Masks the API token and every secret the run's topology refers to (its saved copy:
    the one its steps ran with)."""
    token = os.environ.get("FAILBACK_API_TOKEN")
    try:
        topology = load_topology_text(run.topology_text, run.topology_path)
    except FailbackError:
        return Redactor([token or ""])  # the step outputs were masked when journaled
    return Redactor.for_topology(topology, token)


def _files(doc: dict[str, Any], fmt: Format, out: Path) -> dict[Path, str]:
    """File -> text, in the order they are written."""
    from failback.report.render import render_html, render_markdown
    from failback.report.svg import timeline_svg
    from failback.report.timeline import Timeline

    out = out.expanduser()
    if fmt is Format.html:
        return {out: render_html(doc)}
    svg = out.with_suffix(".svg")
    if svg == out:
        raise UsageError(
            f"--out {out} would be both the Markdown report and its timeline",
            hint="name the report FILE.md; its timeline is written as FILE.svg",
        )
    picture = timeline_svg(Timeline.model_validate(doc["timeline"]))
    return {out: render_markdown(doc, svg_link=svg.name), svg: picture}


def _write_all(files: dict[Path, str], *, force: bool) -> None:
    """Write every file, or none when one exists (without ``force``) or is a directory."""
    for path in files:
        if path.is_dir():
            raise UsageError(f"{path} is a directory", hint="give --out a file name")
        if path.exists() and not force:
            raise UsageError(
                f"{path} exists; nothing was written",
                hint="choose another --out file, or add --force to replace it",
            )
        if not path.parent.is_dir():
            raise UsageError(
                f"no directory {path.parent} for {path.name}",
                hint="create it, or choose another --out file",
            )
    for path, text in files.items():
        _write_private(path, text, replace=force)


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    """Write ``text`` to a new 0600 file beside ``path``, then move it into place: never
    over an existing file unless ``replace`` (a link fails when the name is taken)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UsageError(
            f"cannot write in {path.parent}: {exc.strerror or exc}",
            hint="choose a directory you can write to",
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except FileExistsError:
        raise UsageError(
            f"{path} appeared while the report was written; it was left untouched",
            hint="choose another --out file, or add --force to replace it",
        ) from None
    except OSError as exc:
        raise UsageError(
            f"cannot write {path}: {exc.strerror or exc}", hint="choose a file you can write"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
