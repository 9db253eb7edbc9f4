"""``failback lab monitors up|down|status``: one ``failback monitor --node`` per machine.

A lab made with ``--control-plane`` has three monitor nodes (dc1, dc2, witness: the
topology's ``control_plane.nodes``). ``up`` starts, on each of those machines (through
its sshd, so the monitor lives in its namespace, as it would on a real machine):

    failback monitor -c DIR/failback.yaml --node NODE
        --state-dir DIR/monitors/NODE/state --log-file DIR/monitors/NODE/monitor.log

detached (a session of its own), its console output in ``DIR/monitors/NODE/console.log``
and its PID in ``DIR/monitors/NODE/monitor.pid``. A monitor already running is left
alone, so ``up`` is also how monitors killed by ``lab break SITE host`` come back after
``lab repair`` (which restarts the machine's etcd member, never its monitor). ``down``
stops them: SIGTERM (a monitor lets a run in progress reach a safe point), SIGKILL after
a bounded wait. ``lab down`` does the same before anything else stops.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from failback.errors import FailbackError
from failback.hosts import LocalHost
from failback.lab import detached
from failback.lab.control_plane import MEMBERS, LabControlPlane, LabMonitorPlace
from failback.lab.errors import LabError
from failback.lab.info import LabInfo, load_info
from failback.lab.machines import LabMachines

SETTLE_S = 3.0
"""How long ``up`` watches a new monitor for an early exit (a wrong --node or topology
fails within a second), unless it writes an event first: then it is past its checks."""
STOP_TIMEOUT_S = 10.0
"""How long ``down`` waits after SIGTERM before SIGKILL."""


def failback_command() -> list[str]:
    """This interpreter's failback: the venv's ``failback`` script beside it, else
    ``python -m failback.cli.main`` with the same interpreter."""
    script = Path(sys.executable).parent / "failback"
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "failback.cli.main"]


def monitor_argv(config: str, place: LabMonitorPlace) -> list[str]:
    """The command of the monitor of machine ``place.name``."""
    return [
        *failback_command(),
        "monitor",
        "-c", config,
        "--node", place.name,
        "--state-dir", place.state_dir,
        "--log-file", place.log_file,
    ]  # fmt: skip


def control_plane_of(info: LabInfo) -> LabControlPlane:
    """The lab's control plane; ``LabError`` with a hint when it was made without one."""
    if info.control_plane is None:
        raise LabError(
            f"the lab in {info.dir} has no control plane (it was made without --control-plane)",
            hint="make one: 'failback lab down --dir DIR --purge', then "
            "'failback lab up --dir DIR --hosts netns --control-plane'",
        )
    cp: LabControlPlane = info.control_plane
    return cp


def monitor_pid(place: LabMonitorPlace) -> int | None:
    """The PID of the monitor of ``place`` when it runs on its machine, else None."""
    return detached.find(place.pid_file, netns=place.netns, needle=place.state_dir)


def _place_doc(place: LabMonitorPlace, pid: int | None) -> dict[str, Any]:
    return {
        "netns": place.netns,
        "pid": pid,
        "running": pid is not None,
        "state_dir": place.state_dir,
        "log_file": place.log_file,
        "console_file": place.console_file,
    }


def describe(cp: LabControlPlane) -> dict[str, Any]:
    """Each monitor's place and PID (for ``lab status`` and ``lab monitors status``)."""
    docs = {}
    for name in MEMBERS:
        place = cp.monitor(name)
        docs[name] = _place_doc(place, monitor_pid(place))
    return docs


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _ready(place: LabMonitorPlace, offset: int) -> bool:
    """The monitor wrote an event since it was started: it got past its checks."""
    return _size(place.log_file) > offset


def monitors_up(directory: Path, *, settle: float = SETTLE_S) -> dict[str, Any]:
    """Start the monitor of every control-plane machine that has none running.

    Each new monitor is watched (at most ``settle`` s, all at once) until it writes an
    event or exits; one that exited is reported with the last words of its
    console. ``ok`` is true when every monitor runs.
    """
    directory = Path(os.path.abspath(directory))
    info = load_info(LocalHost(), directory)
    cp = control_plane_of(info)
    docs: dict[str, dict[str, Any]] = {}
    launched: dict[str, tuple[int, int]] = {}
    todo: dict[str, LabMonitorPlace] = {}
    for name in MEMBERS:
        place = cp.monitor(name)
        pid = monitor_pid(place)
        docs[name] = {**_place_doc(place, pid), "started": False}
        if pid is None:
            Path(place.state_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
            todo[name] = place
    with LabMachines(info.network) as machines, ThreadPoolExecutor(max(1, len(todo))) as pool:
        hosts = {name: machines.of(name) for name in todo}  # one connection per machine
        sizes = {n: (_size(p.log_file), _size(p.console_file)) for n, p in todo.items()}
        futures = {
            name: pool.submit(
                detached.launch,
                hosts[name],
                monitor_argv(info.config, place),
                log_file=place.console_file,
                pid_file=place.pid_file,
                cwd=place.dir,
                what=f"the monitor on {name}",
            )
            for name, place in todo.items()
        }
        for name, future in futures.items():
            try:
                pid = future.result()
            except FailbackError as exc:  # its machine is down or cut off
                docs[name]["error"] = exc.message
                docs[name]["hint"] = (
                    f"is {name}'s machine up and on the network? "
                    f"(failback lab repair {name} host, failback lab heal {name})"
                )
                continue
            docs[name].update(pid=pid, running=True, started=True)
            launched[name] = sizes[name]
    deadline = time.monotonic() + settle
    waiting = set(launched)
    while waiting:
        for name in sorted(waiting):
            place = cp.monitor(name)
            pid = docs[name]["pid"]
            if _ready(place, launched[name][0]):
                waiting.discard(name)
            elif not detached.alive(pid):
                docs[name].update(running=False, error=_exit_words(place, launched[name][1]))
                docs[name]["hint"] = f"see {place.console_file}"
                waiting.discard(name)
        if not waiting or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for name in launched:  # a ready monitor may have died since: say what runs now
        place = cp.monitor(name)
        if docs[name]["running"] and monitor_pid(place) is None:
            docs[name].update(running=False, error=_exit_words(place, launched[name][1]))
            docs[name]["hint"] = f"see {place.console_file}"
    return {
        "dir": str(directory),
        "config": info.config,
        "monitors": docs,
        "ok": all(doc["running"] for doc in docs.values()),
    }


def _exit_words(place: LabMonitorPlace, offset: int) -> str:
    try:
        with open(place.console_file, "rb") as console:
            console.seek(offset)
            text = console.read().decode(errors="replace").strip().splitlines()
    except OSError:
        text = []
    said = " | ".join(line.strip() for line in text[-3:] if line.strip())
    return f"exited at once: {said}" if said else "exited at once (its console is empty)"


def monitors_down(directory: Path, *, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """Stop every monitor of the lab (SIGTERM, SIGKILL after ``timeout`` s); report which."""
    directory = Path(os.path.abspath(directory))
    info = load_info(LocalHost(), directory)
    cp = control_plane_of(info)
    return {"dir": str(directory), "stopped": stop_all(cp, timeout=timeout)}


def stop_all(cp: LabControlPlane, *, timeout: float = STOP_TIMEOUT_S) -> dict[str, Any]:
    """``{machine: {pid, how}}`` of each monitor stopped (how: terminated or killed).

    All get SIGTERM at once and share the wait: stopping three takes no longer than one.
    """
    running = {name: (cp.monitor(name), monitor_pid(cp.monitor(name))) for name in MEMBERS}
    targets = [(pid, place.netns, place.state_dir) for place, pid in running.values() if pid]
    how = detached.terminate_all(targets, timeout=timeout)
    return {name: {"pid": pid, "how": how[pid]} for name, (_, pid) in running.items() if pid}


def monitors_status(directory: Path) -> dict[str, Any]:
    """Which monitors run (PID, namespace, files)."""
    directory = Path(os.path.abspath(directory))
    info = load_info(LocalHost(), directory)
    cp = control_plane_of(info)
    return {"dir": str(directory), "monitors": describe(cp)}
