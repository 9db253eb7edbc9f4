"""Where baselines are kept: one private file per site in the state directory.

``STATE_DIR/baselines/SITE.json``, mode 0600 in a 0700 directory, written atomically
(a temporary file, fsync, rename), so a crash leaves the old baseline or the new one.

Why a file and not the journal: a baseline is evidence a person takes on a day the site
is known to be clean and may want to keep, copy off the machine or compare by hand
(``sha256sum -c``-style review, a ticket attachment); it is written a few times a year
and read by one gate, so it needs none of the journal's transactions. It lives with
failback's state, never on the site it describes: a compromised site cannot rewrite the
evidence it is judged by. With an etcd control plane, each node has its own state
directory: record the baseline on the node that runs failbacks, or copy the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from failback.baseline.site import FORMAT
from failback.errors import UsageError
from failback.model.fields import valid_name

__all__ = ["baseline_path", "load_baseline", "recorded_at", "save_baseline"]

DIRECTORY = "baselines"


def baseline_path(state_dir: Path, site: str) -> Path:
    if not valid_name(site):  # the name becomes a file name: never a path
        raise UsageError(f"{site!r} is not a site name", "see `failback status` for the sites")
    return Path(state_dir) / DIRECTORY / f"{site}.json"


def save_baseline(state_dir: Path, document: dict[str, Any]) -> Path:
    """Write ``document`` as the baseline of its site, atomically, private (0600)."""
    path = baseline_path(state_dir, str(document["site"]))
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=1, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def load_baseline(state_dir: Path, site: str) -> dict[str, Any] | None:
    """The baseline of ``site``, None when none was recorded; UsageError (one line) when
    the file is there but unusable."""
    path = baseline_path(state_dir, site)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}", "check its owner and mode") from (
            None
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"{path} is not a baseline (invalid JSON at line {exc.lineno})",
            f"record it again on a clean site: failback baseline record {site}",
        ) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UsageError(
            f"{path} is not a baseline of format {FORMAT}",
            f"record it again on a clean site: failback baseline record {site}",
        )
    if document.get("site") != site:
        raise UsageError(
            f"{path} holds the baseline of {document.get('site')!r}, not of {site}",
            "a baseline file was copied under the wrong name: rename it or record again",
        )
    return document


def recorded_at(state_dir: Path, site: str) -> float | None:
    """When the baseline of ``site`` was recorded, or None (none, or unusable: the gate
    says why when it runs)."""
    try:
        document = load_baseline(state_dir, site)
    except UsageError:
        return None
    return None if document is None else float(document.get("recorded_at") or 0.0)
