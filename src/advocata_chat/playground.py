"""The prompt engineers' workbench: the playground page and the prompt versions in use.

The page is three static files shipped in the package (no build step, no CDN) and talks to
the public API only.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from advocata_chat.deps import CurrentUser, RuntimeDep
from advocata_chat.errors import NotFound, Unauthorized, error_responses
from advocata_chat.llm import model_name
from advocata_chat.schemas import PromptList, PromptOut

STATIC = Path(__file__).parent / "static"
_FILES = {
    "playground.js": "text/javascript",
    "playground.css": "text/css",
}
# Prompt engineers reload the page while they work: never serve a stale copy.
_NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter()


@router.get(
    "/api/v1/prompts",
    response_model=PromptList,
    tags=["prompts"],
    summary="Prompt versions in use",
    responses=error_responses(Unauthorized),
)
async def list_prompts(user: CurrentUser, rt: RuntimeDep):
    """The prompt versions in use (sha256 of each file with its includes), the chat model
    that answers and, in development, why an edited file is not in use."""
    return PromptList(
        live_reload=rt.prompts.live,
        model=model_name(rt.llm),
        prompts=[PromptOut(**vars(s)) for s in rt.prompts.status()],
    )


@router.get("/playground", include_in_schema=False)
async def playground_page() -> FileResponse:
    return FileResponse(STATIC / "playground.html", media_type="text/html", headers=_NO_CACHE)


@router.get("/playground/{name}", include_in_schema=False)
async def playground_asset(name: str) -> FileResponse:
    if name not in _FILES:
        raise NotFound("No such file")
    return FileResponse(STATIC / name, media_type=_FILES[name], headers=_NO_CACHE)
