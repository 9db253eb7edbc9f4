"""The history samples of an observation: what the console's health and lag charts plot.

Pure (writes nothing): the monitor and the API server both observe, and both hand
these samples to ``Journal.record_history``, which downsamples and bounds them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from failback.model.observed import ComponentObservation


def history_samples(
    observations: Iterable[ComponentObservation | Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One sample per component and site: health, role and, for a database, its lag.

    Takes observations or their JSON form (a status document's ``components``)."""
    samples = []
    for obs in observations:
        doc = obs.model_dump(mode="json") if isinstance(obs, ComponentObservation) else obs
        data = doc.get("data") or {}
        samples.append(
            {
                "component": doc["component"],
                "site": doc["site"],
                "healthy": bool(doc.get("healthy")),
                "role": str(doc.get("role") or "unknown"),
                "lag_bytes": data.get("lag_bytes"),
                "lag_seconds": data.get("lag_seconds"),
            }
        )
    return samples
