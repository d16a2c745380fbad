"""Dependencies for routes, as Annotated aliases so signatures read like sentences."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from advocata_chat.auth import Principal, decode_principal
from advocata_chat.errors import Unauthorized
from advocata_chat.runtime import Runtime

_bearer = HTTPBearer(auto_error=False, description="JWT with the user's UUID in `sub`")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def current_principal(
    rt: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'")
    return decode_principal(rt.settings, credentials.credentials)


def current_user(principal: Annotated[Principal, Depends(current_principal)]) -> uuid.UUID:
    return principal.user_id


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]
CurrentUser = Annotated[uuid.UUID, Depends(current_user)]
