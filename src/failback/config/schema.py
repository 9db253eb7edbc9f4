"""The topology's JSON Schema, for editors (YAML language server) and `failback schema`.

Generated from the same models that validate the file, so the two cannot drift.
"""

from __future__ import annotations

from typing import Any

from failback.config.models import Topology

__all__ = ["SCHEMA_ID", "topology_json_schema"]

SCHEMA_ID = "https://json-schema.org/draft/2020-12/schema"


def topology_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a topology file."""
    schema = Topology.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_ID,
        "title": "failback topology",
        "description": "The topology file read by failback: sites, services, components, "
        "checks and policies. See docs/topology.md.",
        **{k: v for k, v in schema.items() if k not in ("title", "description")},
    }
