"""Schema family of a prompt template: create, update, public view, revisions, and rendering."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from backend.paging import Page
from backend.partial_update import PartialUpdate
from backend.prompts.placeholders import NAME_PATTERN, variables_of
from backend.registry.schemas import GroupName
from backend.text import Text

MAX_BODY_CHARS = 100_000
MAX_GROUPS = 50
MAX_VARIABLES = 100
TEMPLATE_ID_PATTERN = r"^pt-[0-9a-f]{1,40}$"


class TemplateKind(StrEnum):
    persona = "persona"  # a system prompt
    directive = "directive"  # text added to the user's message


class Sharing(StrEnum):
    private = "private"  # the owner only
    groups = "groups"  # the owner and members of the listed groups
    public = "public"  # every signed-in user


class Scope(StrEnum):
    mine = "mine"
    shared = "shared"  # shared with one of my groups by someone else
    public = "public"


Title = Annotated[Text, Field(min_length=1, max_length=256)]
Body = Annotated[Text, Field(min_length=1, max_length=MAX_BODY_CHARS)]
Groups = Annotated[list[GroupName], Field(max_length=MAX_GROUPS)]


class TemplateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body = Field(description="The text; {{name}} marks a variable filled in at use.")
    kind: TemplateKind
    sharing: Sharing = Sharing.private
    groups: Groups = Field(
        default_factory=list,
        description="With sharing 'groups': who may use it (groups you belong to; any group for admins).",
    )

    @model_validator(mode="after")
    def _groups_go_with_group_sharing(self) -> TemplateCreate:
        check_sharing(self.sharing, self.groups)
        return self


class TemplateUpdate(PartialUpdate):
    """Only the fields sent change; each update makes a new revision. Changing sharing away from 'groups' clears
    the groups."""

    title: Title | None = None
    body: Body | None = None
    kind: TemplateKind | None = None
    sharing: Sharing | None = None
    groups: Groups | None = None


def check_sharing(sharing: Sharing, groups: list[str]) -> None:
    if sharing == Sharing.groups and not groups:
        raise ValueError("sharing 'groups' needs at least one group in 'groups'")
    if sharing != Sharing.groups and groups:
        raise ValueError(f"'groups' are for sharing 'groups', not '{sharing.value}'")


class TemplatePublic(BaseModel):
    id: str
    owner: str = Field(description="The owner's stable user id.")
    title: str
    body: str
    kind: TemplateKind
    sharing: Sharing
    groups: list[str]
    variables: list[str] = Field(description="The {{placeholders}} of the body, in order of first appearance.")
    revision: int = Field(description="The current revision; 1 at creation, one more with each update.")
    created_at: datetime
    updated_at: datetime


class TemplatePage(Page[TemplatePublic]):
    pass


class RevisionPublic(BaseModel):
    template_id: str
    revision: int
    title: str
    body: str
    kind: TemplateKind
    sharing: Sharing
    groups: list[str]
    variables: list[str]
    created_by: str
    created_at: datetime
    restored_from: int | None = Field(description="The revision this one restored, if it was made by a restore.")


class RevisionPage(Page[RevisionPublic]):
    pass


VariableName = Annotated[str, StringConstraints(pattern=f"^{NAME_PATTERN}$")]


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[VariableName, Annotated[Text, Field(max_length=MAX_BODY_CHARS)]] = Field(
        default_factory=dict, max_length=MAX_VARIABLES, description="A value for every variable of the template."
    )


class Rendered(BaseModel):
    template_id: str
    revision: int
    kind: TemplateKind
    text: str


def with_variables(row: Any) -> dict[str, Any]:
    """A template or revision row with its variables, ready for ``model_validate``."""
    return {**row, "variables": variables_of(row["body"])}
