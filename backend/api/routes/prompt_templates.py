"""/api/prompt-templates: the prompt library (docs/prompt-library.md).

Anyone signed in keeps their own templates and shares them with their groups or with everyone. A template one may
not see answers 404; one shared with you can be used (read, rendered) but changed only by its owner (403)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from backend.api.deps import CurrentUser, Paging, ServicesDep, requires
from backend.api.openapi import errors
from backend.configuration.features import Feature
from backend.prompts.schemas import (
    Rendered,
    RenderRequest,
    RevisionPage,
    Scope,
    TemplateCreate,
    TemplateKind,
    TemplatePage,
    TemplatePublic,
    TemplateUpdate,
)
from backend.prompts.service import MAX_SEARCH_CHARS

router = APIRouter(prefix="/api/prompt-templates", tags=["prompt templates"])

SCOPE_HELP = (
    "mine: your own; shared: shared with your groups by others; public: everyone's. Default: every template you "
    "may see."
)
# Feature toggles (docs/configuration.md); admins are exempt.
LIBRARY = [requires(Feature.show_prompt_template_library)]
EDIT = [requires(Feature.edit_prompt_template)]
TemplateId = Annotated[str, Path(max_length=64, description="The template's id.")]


@router.post("", status_code=status.HTTP_201_CREATED, responses=errors(400), dependencies=EDIT)
async def create_template(body: TemplateCreate, user: CurrentUser, services: ServicesDep) -> TemplatePublic:
    return await services.prompts.create(body, user)


@router.get("", dependencies=LIBRARY)
async def list_templates(
    user: CurrentUser,
    services: ServicesDep,
    page: Paging,
    kind: Annotated[TemplateKind | None, Query(description="Only templates of this kind.")] = None,
    q: Annotated[
        str | None, Query(max_length=MAX_SEARCH_CHARS, description="Words to find in the title or the body.")
    ] = None,
    scope: Annotated[Scope | None, Query(description=SCOPE_HELP)] = None,
) -> TemplatePage:
    return await services.prompts.page(user, page, kind=kind, search=q, scope=scope)


@router.get("/{template_id}", responses=errors(404), dependencies=LIBRARY)
async def get_template(template_id: TemplateId, user: CurrentUser, services: ServicesDep) -> TemplatePublic:
    return await services.prompts.get(template_id, user)


@router.patch("/{template_id}", responses=errors(400, 404), dependencies=EDIT)
async def update_template(
    template_id: TemplateId, body: TemplateUpdate, user: CurrentUser, services: ServicesDep
) -> TemplatePublic:
    return await services.prompts.update(template_id, body, user)


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404), dependencies=EDIT)
async def delete_template(template_id: TemplateId, user: CurrentUser, services: ServicesDep) -> None:
    await services.prompts.delete(template_id, user)


@router.get("/{template_id}/revisions", responses=errors(404), dependencies=LIBRARY)
async def list_revisions(
    template_id: TemplateId, user: CurrentUser, services: ServicesDep, page: Paging
) -> RevisionPage:
    return await services.prompts.revisions(template_id, user, page)


@router.post("/{template_id}/revisions/{revision}/restore", responses=errors(404), dependencies=EDIT)
async def restore_revision(
    template_id: TemplateId,
    revision: Annotated[int, Path(ge=1, le=2**31 - 1, description="The revision whose content comes back.")],
    user: CurrentUser,
    services: ServicesDep,
) -> TemplatePublic:
    return await services.prompts.restore(template_id, revision, user)


@router.post("/{template_id}/render", responses=errors(400, 404))
async def render_template(
    template_id: TemplateId, body: RenderRequest, user: CurrentUser, services: ServicesDep
) -> Rendered:
    return await services.prompts.rendered(template_id, user, body.variables)
