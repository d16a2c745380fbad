"""REST routes: the legal conversation templates."""

from __future__ import annotations

from fastapi import APIRouter

from advocata_chat.deps import CurrentUser, RuntimeDep
from advocata_chat.errors import error_responses
from advocata_chat.responses import AUTH
from advocata_chat.schemas import TemplateOut

router = APIRouter(prefix="/api/v1/chat")


@router.get(
    "/templates",
    response_model=list[TemplateOut],
    tags=["templates"],
    summary="List conversation templates",
    responses=error_responses(*AUTH),
)
async def list_templates(user: CurrentUser, rt: RuntimeDep):
    """Legal conversation templates (ДТП/ОСАГО, отказ страховой, права потребителей, трудовой
    спор, аренда, долг по расписке): a title, the system-prompt addition, suggested questions
    and the facts to collect. Create a conversation with `template_id` to apply one."""
    return [TemplateOut(**t.__dict__) for t in rt.templates.values()]
