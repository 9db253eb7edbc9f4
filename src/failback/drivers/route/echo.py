"""ICMP echo from the routing machine: the probe that proves a path answers.

A raw socket opened in the routing namespace sends echo requests with an identifier of
its own and reads replies until each one came back or the time is up. Only an echo
*reply* from the address asked counts: a "network unreachable" from a router on the way
is an answer too, but it says the path is broken, and is reported as such.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import time
from dataclasses import dataclass, field

ECHO_REQUEST = 8
ECHO_REPLY = 0
UNREACHABLE = 3
TIME_EXCEEDED = 11


@dataclass
class EchoResult:
    """How many of the requests were answered, and what else came back."""

    sent: int
    replies: int
    rtt_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.sent > 0 and self.replies == self.sent

    def describe(self, address: str) -> str:
        if self.ok:
            best = min(self.rtt_s) * 1000 if self.rtt_s else 0.0
            return f"{address} answered {self.replies}/{self.sent} echoes ({best:.1f} ms)"
        why = f" ({self.errors[-1]})" if self.errors else ""
        return f"{address} answered {self.replies}/{self.sent} echoes{why}"


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def request(ident: int, seq: int, payload: bytes = b"failback-route") -> bytes:
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, checksum(header + payload), ident, seq) + payload


def _parse(packet: bytes) -> tuple[str, int, int, int, int] | None:
    """(source, type, code, ident, seq) of an IPv4 packet carrying ICMP; None otherwise.

    For an error (unreachable, time exceeded) the identifier and sequence are those of
    the request quoted in it, so it is matched to the probe it answers."""
    if len(packet) < 20:
        return None
    header_len = (packet[0] & 0x0F) * 4
    source = socket.inet_ntoa(packet[12:16])
    icmp = packet[header_len:]
    if len(icmp) < 8:
        return None
    kind, code = icmp[0], icmp[1]
    if kind in (UNREACHABLE, TIME_EXCEEDED):
        quoted = icmp[8:]
        inner_len = (quoted[0] & 0x0F) * 4 if quoted else 0
        inner = quoted[inner_len : inner_len + 8]
        if len(inner) < 8:
            return None
        _t, _c, _s, ident, seq = struct.unpack("!BBHHH", inner)
        return source, kind, code, ident, seq
    _t, _c, _s, ident, seq = struct.unpack("!BBHHH", icmp[:8])
    return source, kind, code, ident, seq


_ERRORS = {
    (UNREACHABLE, 0): "network unreachable",
    (UNREACHABLE, 1): "host unreachable",
    (UNREACHABLE, 3): "port unreachable",
}


def echo(
    sock: socket.socket, address: str, *, count: int, timeout: float, spacing: float = 0.0
) -> EchoResult:
    """Send ``count`` echo requests to ``address`` and wait up to ``timeout`` (after the
    last one) for their replies. Never raises for a silent or refusing path."""
    ident = (os.getpid() ^ id(sock)) & 0xFFFF
    sent_at: dict[int, float] = {}
    result = EchoResult(sent=0, replies=0)
    for seq in range(1, count + 1):
        try:
            sock.sendto(request(ident, seq), (address, 0))
        except OSError as exc:  # no route at all, down interface...
            result.errors.append(exc.strerror or str(exc))
            continue
        sent_at[seq] = time.monotonic()
        result.sent += 1
        if spacing and seq < count:
            time.sleep(spacing)
    if result.sent == 0:
        result.sent = count
        return result
    deadline = time.monotonic() + timeout
    answered: set[int] = set()
    while len(answered) < len(sent_at):
        left = deadline - time.monotonic()
        if left <= 0:
            if not result.errors:
                result.errors.append(f"no reply within {timeout:g}s")
            break
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            continue
        packet, _peer = sock.recvfrom(65535)
        parsed = _parse(packet)
        if parsed is None:
            continue
        source, kind, code, got_ident, seq = parsed
        if got_ident != ident or seq not in sent_at or seq in answered:
            continue
        if kind == ECHO_REPLY and source == address:
            answered.add(seq)
            result.replies += 1
            result.rtt_s.append(time.monotonic() - sent_at[seq])
        elif kind in (UNREACHABLE, TIME_EXCEEDED):
            answered.add(seq)
            what = _ERRORS.get((kind, code), f"ICMP type {kind} code {code}")
            result.errors.append(f"{what} from {source}")
    return result
