"""The component union, assembled from the drivers' own ``Settings`` (the catalog).

The union is discriminated on ``driver`` so that a mistake is reported against the one
model the user meant, not as a pile of "did not match any of" errors. The config
package knows no driver: a new one appears here by its catalog line.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from failback.drivers.catalog import settings_models
from failback.model.component import ComponentSettings

COMPONENT_MODELS: tuple[type[ComponentSettings], ...] = settings_models()
"""Every component model; their ``driver`` literals are the known driver names."""

Component = Annotated[Union[COMPONENT_MODELS], Field(discriminator="driver")]  # type: ignore[valid-type]  # noqa: UP007
"""A component of any driver; pydantic picks the model from ``driver:``."""

__all__ = ["COMPONENT_MODELS", "Component", "ComponentSettings"]
