"""Shared base for the typed, frozen config sections built from params.yaml.

Sections carry types and bounds only. Every value lives in params.yaml, so no field has a
default here: a missing key is an error that names it, never a silent second value.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are immutable after loading."""

    model_config = ConfigDict(extra="forbid", frozen=True)
