"""Load a topology file: read, parse with lines, validate, cross-check; all or nothing.

Either a complete, valid ``Topology`` comes back, or a ``ConfigError`` listing every
problem found, each with ``FILE:LINE``. Nothing else escapes: no traceback reaches a
person for a mistake in their file (promise 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from failback.config.errors import ConfigError, Problem
from failback.config.models import Service, Topology
from failback.config.semantics import Reporter, check_raw, check_service, warn_service
from failback.config.validation import problems_from_validation
from failback.config.yaml_source import YamlDocument, parse_yaml

__all__ = ["load_topology", "load_topology_text"]

_START_HINT = "pass -c PATH, set FAILBACK_CONFIG, or start from examples/failback.yaml"


def load_topology(path: str | Path) -> Topology:
    """Read and validate the topology file at ``path``; ``ConfigError`` lists every problem."""
    shown = str(path)
    file = Path(path).expanduser()
    try:
        is_directory = file.is_dir()
    except OSError:  # e.g. a parent directory we may not traverse: reading says why
        is_directory = False
    if is_directory:
        candidate = file / "failback.yaml"
        hint = f"did you mean {candidate}?" if candidate.is_file() else _START_HINT
        raise ConfigError([Problem(shown, None, "", "is a directory, not a YAML file", hint)])
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise ConfigError([Problem(shown, None, "", "no such file", _START_HINT)]) from None
    except PermissionError:
        raise ConfigError(
            [
                Problem(
                    shown,
                    None,
                    "",
                    "permission denied: cannot read the file",
                    "run failback as a user that can read it",
                )
            ]
        ) from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError([Problem(shown, None, "", f"cannot read: {reason}", None)]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ConfigError(
            [Problem(shown, line, "", "the file is not UTF-8 text", "save it as UTF-8")]
        ) from None
    return load_topology_text(text, shown)


def load_topology_text(text: str, path: str) -> Topology:
    """Validate ``text`` as if read from ``path`` (how a run reloads its snapshot).

    ``path`` is shown in problems as given and decides ``config_dir``: relative
    ``state_dir`` and ``file:`` secret paths are resolved against its directory.
    """
    absolute = Path(path).expanduser().absolute()
    doc, problems = parse_yaml(text, path)
    if doc is None:
        raise ConfigError(problems)
    context = {"config_dir": str(absolute.parent)}
    topology: Topology | None = None
    try:
        topology = Topology.model_validate(doc.data, context=context)
    except ValidationError as err:
        problems.extend(problems_from_validation(err, Topology, doc, path))
    problems.extend(_semantic_problems(doc, topology, context, path))
    if problems or topology is None:
        raise ConfigError(problems)
    topology._path = absolute
    topology._text = text
    report = Reporter(path, doc)
    for name, service in topology.services.items():
        warn_service(name, service, report)
    topology._warnings = report.warnings
    return topology


def _semantic_problems(
    doc: YamlDocument, topology: Topology | None, context: dict[str, Any], file: str
) -> list[Problem]:
    """Cross-checks; when some sections failed validation, run them on those that passed."""
    report = Reporter(file, doc)
    data = doc.data if isinstance(doc.data, dict) else {}
    check_raw(data, report)
    raw_sites = data.get("sites")
    declared = list(raw_sites) if isinstance(raw_sites, dict) else None
    if topology is not None:
        for name, service in topology.services.items():
            check_service(name, service, declared, report)
        return report.problems
    raw_services = data.get("services")
    if isinstance(raw_services, dict):
        for name, raw in raw_services.items():
            try:
                service = Service.model_validate(raw, context=context)
            except ValidationError:
                continue
            service._name = name
            check_service(name, service, declared, report)
    return report.problems
