"""Typed views of HAProxy's ``show servers state`` and ``show stat`` answers.

The formats are those of HAProxy 2.6's management guide (section 9.1 for the
``show stat`` CSV, "show servers state" format version 1). Parsing is kept pure
(text in, dataclasses out) so it is unit-testable without a running HAProxy.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Literal

AdminState = Literal["ready", "drain", "maint"]
OpState = Literal["stopped", "starting", "running", "stopping"]

# srv_admin_state is a bit mask (management guide, "show servers state").
ADMF_FMAINT = 0x01  # forced into maintenance (runtime API / config "disabled")
ADMF_IMAINT = 0x02  # inherited maintenance from a tracked server
ADMF_CMAINT = 0x04  # configuration marker; 2.6 keeps it after "state ready" (measured)
ADMF_FDRAIN = 0x08  # forced drain
ADMF_IDRAIN = 0x10  # inherited drain
ADMF_RMAINT = 0x20  # maintenance because DNS resolution failed
ADMF_HMAINT = 0x40  # FQDN set from the runtime API (not a maintenance by itself)

# CMAINT is left out on purpose: measured on 2.6.12, a server declared "disabled"
# in the configuration keeps 0x04 after "set server ... state ready" and does take
# traffic; FMAINT is what actually removes it.
_MAINT_MASK = ADMF_FMAINT | ADMF_IMAINT | ADMF_RMAINT
_DRAIN_MASK = ADMF_FDRAIN | ADMF_IDRAIN

_OP_STATES: dict[int, OpState] = {0: "stopped", 1: "starting", 2: "running", 3: "stopping"}


def admin_state_from_mask(mask: int) -> AdminState:
    """Fold the admin bit mask into the three states the runtime API can set."""
    if mask & _MAINT_MASK:
        return "maint"
    if mask & _DRAIN_MASK:
        return "drain"
    return "ready"


@dataclass(frozen=True)
class ServerState:
    """Where one server stands: what an operator set, and what HAProxy sees."""

    backend: str
    name: str
    address: str
    admin_state: AdminState
    admin_flags: int
    op_state: OpState
    weight: int
    initial_weight: int
    check_status: str
    current_sessions: int
    status: str

    @property
    def takes_new_sessions(self) -> bool:
        """True when a new client connection can be sent to this server."""
        return (
            self.admin_state == "ready"
            and self.op_state in ("running", "starting")
            and self.weight > 0
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "backend": self.backend,
            "name": self.name,
            "address": self.address,
            "admin_state": self.admin_state,
            "admin_flags": self.admin_flags,
            "op_state": self.op_state,
            "weight": self.weight,
            "initial_weight": self.initial_weight,
            "check_status": self.check_status,
            "current_sessions": self.current_sessions,
            "status": self.status,
            "takes_new_sessions": self.takes_new_sessions,
        }


@dataclass(frozen=True)
class ServerStats:
    """The counters of one server from ``show stat`` (CSV), typed.

    Fields HAProxy leaves empty for a server (e.g. ``check_status`` without health
    checks, ``hrsp_*`` in TCP mode) become ``""`` or ``0``; ``raw`` keeps every
    column as text for anything not promoted to a field.
    """

    backend: str
    server: str
    status: str
    weight: int
    scur: int
    smax: int
    stot: int
    econ: int
    eresp: int
    lbtot: int
    hrsp_2xx: int
    hrsp_5xx: int
    qtime: int
    ctime: int
    rtime: int
    ttime: int
    check_status: str
    lastchg: int
    downtime: int
    addr: str
    raw: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if k != "raw"}


def _int(text: str | None) -> int:
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        return 0


def parse_servers_state(answer: str) -> list[dict[str, str]]:
    """Rows of ``show servers state`` as dicts keyed by the header's column names."""
    header: list[str] | None = None
    rows: list[dict[str, str]] = []
    for line in answer.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if header is None:
                header = line.lstrip("#").split()
            continue
        if header is None:
            continue  # the leading format-version line ("1")
        rows.append(dict(zip(header, line.split(), strict=False)))
    return rows


def parse_stat_csv(answer: str) -> list[dict[str, str]]:
    """Rows of ``show stat`` (CSV, header line starting with ``# ``) as dicts."""
    text = answer.strip()
    if not text.startswith("#"):
        return []
    text = text.lstrip("#").lstrip()
    reader = csv.DictReader(io.StringIO(text))
    return [{k: (v or "") for k, v in row.items() if k} for row in reader]


def server_stats_from_row(row: dict[str, str]) -> ServerStats:
    return ServerStats(
        backend=row.get("pxname", ""),
        server=row.get("svname", ""),
        status=row.get("status", ""),
        weight=_int(row.get("weight")),
        scur=_int(row.get("scur")),
        smax=_int(row.get("smax")),
        stot=_int(row.get("stot")),
        econ=_int(row.get("econ")),
        eresp=_int(row.get("eresp")),
        lbtot=_int(row.get("lbtot")),
        hrsp_2xx=_int(row.get("hrsp_2xx")),
        hrsp_5xx=_int(row.get("hrsp_5xx")),
        qtime=_int(row.get("qtime")),
        ctime=_int(row.get("ctime")),
        rtime=_int(row.get("rtime")),
        ttime=_int(row.get("ttime")),
        check_status=row.get("check_status", "").lstrip("* "),
        lastchg=_int(row.get("lastchg")),
        downtime=_int(row.get("downtime")),
        addr=row.get("addr", ""),
        raw=dict(row),
    )


def server_state_from_rows(state_row: dict[str, str], stats: ServerStats | None) -> ServerState:
    """Merge one ``show servers state`` row with the same server's ``show stat`` row.

    The admin/op states come from the bit masks (exact); check status, sessions and
    the human status word come from ``show stat`` (which has them as text).
    """
    mask = _int(state_row.get("srv_admin_state"))
    port = state_row.get("srv_port", "")
    addr = state_row.get("srv_addr", "")
    return ServerState(
        backend=state_row.get("be_name", ""),
        name=state_row.get("srv_name", ""),
        address=f"{addr}:{port}" if port and port != "0" else addr,
        admin_state=admin_state_from_mask(mask),
        admin_flags=mask,
        op_state=_OP_STATES.get(_int(state_row.get("srv_op_state")), "stopped"),
        weight=_int(state_row.get("srv_uweight")),
        initial_weight=_int(state_row.get("srv_iweight")),
        check_status=stats.check_status if stats else "",
        current_sessions=stats.scur if stats else 0,
        status=stats.status if stats else "",
    )
