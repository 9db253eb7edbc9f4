"""Bearer-token protection of the mutating endpoints.

401 without credentials, 403 with wrong ones (or when the server has no token at all:
it is then read-only). The comparison is constant-time (``hmac.compare_digest``) so
that response timing says nothing about how much of a guess was right. The token is
never logged, echoed or stored in an event.
"""

from __future__ import annotations

import hmac

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from failback.api.errors import ApiError
from failback.api.state import app_state

bearer = HTTPBearer(
    auto_error=False,
    description="The token of `$FAILBACK_API_TOKEN` or of the topology's `api.token_file`.",
)


def require_token(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    """Let the request through only with ``Authorization: Bearer <the token>``."""
    expected = app_state(request).settings.token
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise ApiError(
            401,
            "this endpoint changes things and needs Authorization: Bearer TOKEN",
            hint="send the token of $FAILBACK_API_TOKEN (or of api.token_file)",
            headers={"WWW-Authenticate": 'Bearer realm="failback"'},
        )
    if expected is None:
        raise ApiError(
            403,
            "this server has no API token configured, so it is read-only",
            hint="start failback serve with $FAILBACK_API_TOKEN set, or api.token_file",
        )
    if not hmac.compare_digest(credentials.credentials.encode(), expected.encode()):
        raise ApiError(403, "wrong API token", hint="check the token you send")
