"""Request and response shapes of /api/configuration."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from backend.configuration.features import Feature
from backend.paging import Page
from backend.registry.schemas import MODEL_ID_PATTERN
from backend.text import Text

Color = Annotated[str, Field(pattern=r"^#[0-9A-Fa-f]{6}$", description="A colour as #rrggbb.")]
ModelId = Annotated[str, Field(pattern=MODEL_ID_PATTERN, description="A textgen model of the registry.")]


class Source(StrEnum):
    default = "default"  # nothing stored, nothing pinned: the built-in default
    stored = "stored"  # set by an admin through /api/configuration
    environment = "environment"  # pinned by the deployment's settings, which win


class Banner(BaseModel):
    """A message shown to every user at the top of the application."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    text: Text = Field(default="", max_length=2000)
    text_color: Color | None = None
    background_color: Color | None = None

    @model_validator(mode="after")
    def _enabled_needs_text(self) -> Banner:
        if self.enabled and not self.text.strip():
            raise ValueError("an enabled banner needs a text")
        return self


class ConfigurationReplace(BaseModel):
    """PUT: the whole stored configuration. Toggles left out go back to their defaults; pinned ones stay as they are
    (naming one is refused with 409)."""

    model_config = ConfigDict(extra="forbid")

    features: dict[Feature, bool] = Field(description="The toggles to store; the others take their defaults.")
    banner: Banner
    default_model_id: ModelId | None = Field(description="The model chats start with; null: none chosen.")


class ConfigurationUpdate(BaseModel):
    """PATCH: only what is given changes. A toggle set to null goes back to its default."""

    model_config = ConfigDict(extra="forbid")

    features: dict[Feature, bool | None] = Field(default_factory=dict)
    banner: Banner | None = Field(default=None, description="Replaces the banner.")
    default_model_id: ModelId | None = Field(default=None, description="null clears it.")


class FeatureState(BaseModel):
    enabled: bool = Field(description="The value in force: the pinned one, else the stored one, else the default.")
    source: Source = Field(description="Where the value in force comes from.")
    default: bool
    stored: bool | None = Field(description="What admins stored (null: nothing); a pin hides, never erases, it.")
    pinned_by: str | None = Field(description="The deployment setting that pins this toggle; null: not pinned.")
    allowed: bool = Field(description="Whether you may use the feature (admins are exempt from toggles).")
    description: str


class ConfigurationPublic(BaseModel):
    version: int = Field(description="0 until the first write.")
    updated_at: datetime | None
    updated_by: str | None = Field(description="Who wrote this version (shown to admins only).")
    features: dict[Feature, FeatureState]
    banner: Banner
    default_model_id: str | None


class Change(BaseModel):
    field: str = Field(description="'features.<name>', 'banner' or 'default_model_id'.")
    before: Any = Field(description="The stored value before (null: none stored, the default applied).")
    after: Any


class ConfigurationVersion(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    created_at: datetime
    created_by: str
    restored_from: int | None = Field(description="The version this one restored, if it is a restore.")
    changes: list[Change]
    features: dict[str, bool] = Field(description="The toggles stored in this version.")
    banner: Banner
    default_model_id: str | None


class ConfigurationVersionPage(Page[ConfigurationVersion]):
    pass
