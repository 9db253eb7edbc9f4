"""The topology file: models, loading, and error messages that point at FILE:LINE.

Everything else in failback reads the topology through this package::

    topology = load_topology("failback.yaml")      # or ConfigError with every problem
    app = topology.service("app")
    app.primary_site, app.secondary_site
"""

from __future__ import annotations

from failback.config.check_settings import Check, CommandCheck, HttpCheck, SqlCheck, TcpCheck
from failback.config.drivers import COMPONENT_MODELS, Component, ComponentSettings
from failback.config.errors import ConfigError, Problem
from failback.config.loader import load_topology, load_topology_text
from failback.config.models import Service, Site, Topology
from failback.config.policy import Policy
from failback.config.schema import topology_json_schema
from failback.model.durations import format_duration, parse_duration, parse_size
from failback.model.secrets import SecretRef

__all__ = [
    "COMPONENT_MODELS",
    "Check",
    "CommandCheck",
    "Component",
    "ComponentSettings",
    "ConfigError",
    "HttpCheck",
    "Policy",
    "Problem",
    "SecretRef",
    "Service",
    "Site",
    "SqlCheck",
    "TcpCheck",
    "Topology",
    "format_duration",
    "load_topology",
    "load_topology_text",
    "parse_duration",
    "parse_size",
    "topology_json_schema",
]
