"""Bearer-token protection of the mutating endpoints.

401 without credentials, 403 with wrong ones (or when the server has no token at all:
it is then read-only). The check itself is ``failback.api.guard.token_refusal``: the
guard middleware applies it before a mutating request's body is read, and this
dependency applies it again on each mutating route (and marks the route as needing
the token in the OpenAPI document). The token is never logged, echoed or stored in
an event.
"""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from failback.api.guard import is_authenticated, token_refusal
from failback.api.state import app_state

bearer = HTTPBearer(
    auto_error=False,
    description="The token of `$FAILBACK_API_TOKEN` or of the topology's `api.token_file`.",
)


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    """Let the request through only with ``Authorization: Bearer <the token>``."""
    header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
    refusal = token_refusal(header, app_state(request).settings.token)
    if refusal is not None:
        raise refusal


def authenticated(request: Request) -> bool:
    """Whether the caller presented the right token (read endpoints show more then)."""
    return is_authenticated(request.scope)
