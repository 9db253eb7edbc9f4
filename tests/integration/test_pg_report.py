"""The post-incident report of a real PostgreSQL failback (issue 17, item 3).

A real lab (PostgreSQL, HAProxy, PgBouncer on 127.0.0.1): a planned failover to dc2,
then a failback home, both through the CLI. The failback's report must picture the
write-unavailability window the run measured (the PgBouncer PAUSE to the RESUME), with
that measured length as its label, and its point of no return (the promotion) inside
the run. Read back with html.parser and xml.etree; nothing is mocked.
"""

from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import httpx
import pytest

from failback.api import ApiServer, resolve_settings
from failback.config import load_topology
from tests.integration.labfixtures import Lab, lab_base, measurement, new_lab
from tests.integration.test_run_report import by_class, parse, svg_of

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with lab_base("fb-report-") as root:
        yield new_lab(root)


def test_the_failback_report_pictures_the_measured_write_unavailability(lab: Lab) -> None:
    lab.failover("--planned")
    back = lab.failback()
    run_id, report = back["run_id"], back["report"]
    measured = measurement(report, "write_unavailability_s")["value"]
    assert measured is not None and measured > 0

    result = lab.cli("report", str(run_id), "--format", "html")
    assert result.returncode == 0, result.stderr
    svg = svg_of(result.stdout)
    (window,) = by_class(svg, "write-unavailability")
    (label,) = by_class(svg, "write-unavailability-label")
    assert label.text == f"writes unavailable: {measured:.3f} s measured"
    # the band spans the steps that held the writes: from the PAUSE's start to the RESUME's end
    bars = {b.get("data-step"): b for b in by_class(svg, "step")}
    assert len(bars) == len(report["steps"])
    pause, resume = bars["pause-pool-dc2"], bars["route-pool-dc1"]
    left = float(window.get("x") or 0)
    right = left + float(window.get("width") or 0)
    assert float(pause.get("x") or 0) <= left + 1
    assert right <= float(resume.get("x") or 0) + float(resume.get("width") or 0) + 1
    (ponr,) = by_class(svg, "point-of-no-return")
    assert left <= float(ponr.get("x1") or 0) <= right  # the promotion, while writes wait

    page = parse(result.stdout)
    assert any(cell.startswith(f"{measured:.3f} s (measured)") for cell in page.cells)
    assert "write_unavailability_s" in page.cells

    md = lab.cli("report", str(run_id), "--format", "md")
    assert md.returncode == 0, md.stderr
    (uri,) = re.findall(r"\(data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", md.stdout)
    inline = ET.fromstring(base64.b64decode(uri))
    assert len(by_class(inline, "write-unavailability")) == 1


def test_the_api_timeline_holds_the_same_window(lab: Lab) -> None:
    runs = lab.runs()
    (back,) = [r for r in runs if r["kind"] == "failback"]
    settings = resolve_settings(load_topology(lab.config), listen="127.0.0.1:0", environ={})
    server = ApiServer(settings, log_level="warning").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            doc = client.get(f"/api/v1/runs/{back['id']}/timeline").json()
    finally:
        server.stop()
    (window,) = doc["write_unavailability"]
    assert window["stopped_site"] == "dc2" and window["resumed_site"] == "dc1"
    assert window["measurement"] == "write_unavailability_s"
    assert window["measured_s"] == pytest.approx(window["end_s"] - window["start_s"], abs=0.002)
    assert doc["point_of_no_return"]["passed"] is True
