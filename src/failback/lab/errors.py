"""The lab's one error: a lab command cannot do what was asked."""

from __future__ import annotations

from failback.errors import FailbackError


class LabError(FailbackError):
    """A lab command cannot do what was asked (not a lab, unknown site, busy dir...)."""
