"""``failback report`` (issue 17, item 3): the post-incident report of a real run.

The runs are real (the ``command`` driver runs shell commands through the real CLI, a
failing fence rolls one back); so is the journal they leave. The report is read back
the way a reviewer's tools would: the HTML with ``html.parser``, the SVG with
``xml.etree``. The diverged-data test stores a capture with hostile names in the real
journal of a real run (a capture needs PostgreSQL; what matters here is that a
database's or table's name is shown as text). Needs no database server.
"""

from __future__ import annotations

import os
import re
import stat
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from failback.model.secrets import MASK
from failback.store import open_journal
from tests.conftest import CliResult, run_cli
from tests.integration.test_run_timeline import HOSTILE, write_topology

SVG = "{http://www.w3.org/2000/svg}"
TOKEN = "report-token-7f3a9c1e55"
"""Printed by a fence command: the report must mask it (the API token is a secret)."""
EVIL = '<img src=x onerror="alert(1)">'


class Page(HTMLParser):
    """Every start tag with its attributes, and the text of each table cell."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def names(self) -> list[str]:
        return [t for t, _ in self.tags]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    return page


def svg_of(html_text: str) -> ET.Element:
    """The one inline <svg> element of the page, parsed as XML."""
    (svg,) = re.findall(r"<svg .*?</svg>", html_text, flags=re.DOTALL)
    return ET.fromstring(svg)


def by_class(svg: ET.Element, name: str) -> list[ET.Element]:
    return [el for el in svg.iter() if name in (el.get("class") or "").split()]


def outside_fences(markdown: str) -> str:
    """The Markdown text outside its code fences (a fence closes with the same run of
    backticks that opened it)."""
    kept, fence = [], None
    for line in markdown.splitlines():
        opening = re.match(r"^(`{3,})", line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None and line == fence:
            fence = None
        elif fence is None:
            kept.append(line)
    assert fence is None, "a code fence was never closed"
    return "\n".join(kept)


def report(config: Path, *args: str) -> CliResult:
    result = run_cli("report", *args, "-c", str(config), env={"FAILBACK_API_TOKEN": TOKEN})
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A failover whose fence prints hostile markup and the token; a failback approved at
    its gate; a failover rolled back by a failing fence (its own topology)."""
    tmp = tmp_path_factory.mktemp("report")
    fence = f"sleep 0.1; echo '{HOSTILE}'; echo {TOKEN}"
    config = write_topology(tmp, fence=fence)
    over = run_cli("failover", "app", "--planned", "-c", str(config), "--yes", "--json")
    assert over.json()["status"] == "succeeded", over.stdout + over.stderr
    back = run_cli("failback", "app", "-c", str(config), "--yes", "--json").json()
    assert back["status"] == "waiting-approval", back
    approved = run_cli("approve", str(back["run_id"]), "--yes", "-c", str(config), "--json")
    assert approved.json()["status"] == "succeeded", approved.stdout + approved.stderr
    bad = tmp / "bad"
    bad.mkdir()
    bad_config = write_topology(bad, fence="echo no >&2; exit 3")
    failed = run_cli("failover", "app", "--planned", "-c", str(bad_config), "--yes", "--json")
    assert failed.json()["status"] == "rolled-back", failed.stdout
    return {
        "config": config,
        "failover": over.json()["run_id"],
        "failback": back["run_id"],
        "bad_config": bad_config,
        "rolled_back": failed.json()["run_id"],
        "steps": {
            "failover": [s["id"] for s in over.json()["report"]["steps"]],
            "failback": [s["id"] for s in approved.json()["report"]["steps"]],
            "rolled_back": [s["id"] for s in failed.json()["report"]["steps"]],
        },
    }


def test_html_is_one_self_contained_page_with_one_bar_per_step(runs: dict[str, Any]) -> None:
    result = report(runs["config"], str(runs["failover"]), "--format", "html")
    assert result.returncode == 0, result.stderr
    page = parse(result.stdout)
    assert "script" not in page.names()
    for tag, attrs in page.tags:  # nothing loaded from anywhere
        assert not attrs.get("src") and not attrs.get("href"), (tag, attrs)
    assert page.names().count("svg") == 1
    svg = svg_of(result.stdout)
    bars = by_class(svg, "step")
    assert [b.get("data-step") for b in bars] == runs["steps"]["failover"]
    assert len(by_class(svg, "point-of-no-return")) == 1
    assert by_class(svg, "write-unavailability") == []  # the command driver holds no writes
    assert "failover of app from dc1 to dc2: succeeded" in result.stdout


def test_step_output_is_text_never_markup_and_secrets_are_masked(runs: dict[str, Any]) -> None:
    for fmt in ("html", "md"):
        result = report(runs["config"], str(runs["failover"]), "--format", fmt)
        assert result.returncode == 0, result.stderr
        assert TOKEN not in result.stdout, fmt
        # Markdown shows outputs in code fences, where markup is text
        shown = outside_fences(result.stdout) if fmt == "md" else result.stdout
        assert "<script>" not in shown and "<b>" not in shown, fmt
    md = report(runs["config"], str(runs["failover"]), "--format", "md").stdout
    assert "alert(1)" in md  # in a fence, as printed
    html_text = report(runs["config"], str(runs["failover"])).stdout
    page = parse(html_text)
    assert "b" not in page.names() and "script" not in page.names()
    assert any("alert(1)" in cell and "<script>" in cell for cell in page.cells)
    assert any(f"echo {MASK}" in cell for cell in page.cells), "the token was not masked"


def test_who_approved_and_the_wait_are_shown(runs: dict[str, Any]) -> None:
    result = report(runs["config"], str(runs["failback"]))
    page = parse(result.stdout)
    header = dict(zip(page.cells[::2], page.cells[1::2], strict=False))
    assert header["approved: approve"].startswith("by ")
    svg = svg_of(result.stdout)
    (wait,) = by_class(svg, "wait")
    assert wait.get("data-step") == "approve"
    assert "approved by" in (wait.findtext(f"{SVG}title") or "")


def test_a_rolled_back_run_shows_its_failure_and_undos(runs: dict[str, Any]) -> None:
    result = report(runs["bad_config"], str(runs["rolled_back"]))
    assert result.returncode == 0, result.stderr
    svg = svg_of(result.stdout)
    bars = by_class(svg, "step")
    started = [b.get("data-step") for b in bars]
    assert started == runs["steps"]["rolled_back"][: len(started)]
    assert len(by_class(svg, "step-failed")) == 1
    assert by_class(svg, "point-of-no-return") == []  # never reached
    page = parse(result.stdout)
    assert any(cell.startswith("rolled back because") for cell in page.cells)
    assert any("exit status 3" in cell for cell in page.cells)


def test_markdown_out_writes_a_private_report_and_its_svg(
    runs: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "incident.md"
    result = report(runs["config"], str(runs["failback"]), "--format", "md", "--out", str(out))
    assert result.returncode == 0, result.stderr
    svg_file = tmp_path / "incident.svg"
    for path in (out, svg_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    text = out.read_text()
    assert "![timeline of run" in text and "(incident.svg)" in text
    svg = ET.fromstring(svg_file.read_text())
    assert [b.get("data-step") for b in by_class(svg, "step")] == runs["steps"]["failback"]


def test_out_refuses_an_existing_file_unless_forced(runs: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "incident.md"
    (tmp_path / "incident.svg").write_text("keep me")
    result = report(runs["config"], str(runs["failover"]), "--format", "md", "--out", str(out))
    assert result.returncode == 2
    assert "incident.svg exists" in result.stderr and "--force" in result.stderr
    assert not out.exists(), "all or nothing: the report was written beside a refused svg"
    assert (tmp_path / "incident.svg").read_text() == "keep me"
    forced = report(
        runs["config"], str(runs["failover"]), "--format", "md", "--out", str(out), "--force"
    )
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "incident.svg").read_text().startswith("<svg")
    assert stat.S_IMODE(os.stat(tmp_path / "incident.svg").st_mode) == 0o600


def test_an_unknown_run_is_one_line_and_a_hint(runs: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    result = report(runs["config"], "999", "--out", str(out))
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "no run 999" in lines[0] and lines[1].startswith("hint:")
    assert not out.exists()


def test_diverged_rows_with_hostile_names_are_escaped(runs: dict[str, Any], tmp_path: Path) -> None:
    journal = open_journal(runs["config"].parent / ".failback")
    try:
        journal.save_diverged(
            runs["failback"],
            {
                "captured": True, "site": "dc1", "since_lsn": "0/3000000", "transactions": 1,
                "rows": 1, "reason": "test", "changes": [
                    {"xid": 7, "commit_time": "t", "table": f"public.{EVIL}", "op": "insert",
                     "key": {"id": 1}, "old": None, "new": {"id": 1, "v": EVIL},
                     "database": f"db{EVIL}", "commit_lsn": "0/3000100"},
                ],
            },
        )  # fmt: skip
    finally:
        journal.close()
    html_text = report(runs["config"], str(runs["failback"])).stdout
    page = parse(html_text)
    assert "img" not in page.names()
    assert f"public.{EVIL}" in page.cells and f"db{EVIL}" in page.cells
    md = report(runs["config"], str(runs["failback"]), "--format", "md").stdout
    assert "<img" not in md and "&lt;img src=x" in md
    assert "## Diverged data" in md
