"""Toggles the deployment pins (``Settings.features``), and the setting that pins each, to name in answers."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from backend.config import Settings
from backend.configuration.features import Feature


@dataclass(frozen=True, slots=True)
class Pin:
    value: bool
    setting: str  # where the deployment sets it: an environment variable, or the settings file


def pinned_by(name: str, environ: Mapping[str, str]) -> str:
    """The setting a pin comes from, as the operator would look for it (pydantic-settings reads names in any case)."""
    names = {key.upper() for key in environ}
    variable = f"LISA_FEATURES__{name.upper()}"
    if variable in names:
        return variable
    if "LISA_FEATURES" in names:
        return "LISA_FEATURES"
    if config_file := environ.get("LISA_CONFIG_FILE"):
        return f"features.{name} in {config_file} (LISA_CONFIG_FILE)"
    return variable


def pins_from(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[Feature, Pin]:
    environ = os.environ if environ is None else environ
    return {Feature(name): Pin(value, pinned_by(name, environ)) for name, value in settings.features.items()}
