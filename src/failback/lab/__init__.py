"""A local two-site lab: PostgreSQL primary (dc1) + streaming standby (dc2) behind HAProxy.

Used by the demo, the integration tests and the benchmarks; the CLI's
``failback lab`` commands are thin wrappers around these functions.
"""

from failback.lab.core import lab_break, lab_down, lab_processes, lab_repair, lab_status, lab_up
from failback.lab.errors import LabError
from failback.lab.info import LabInfo, LabRouter, LabSite, load_info

__all__ = [
    "LabError",
    "LabInfo",
    "LabRouter",
    "LabSite",
    "lab_break",
    "lab_down",
    "lab_processes",
    "lab_repair",
    "lab_status",
    "lab_up",
    "load_info",
]
