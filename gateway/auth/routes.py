"""``POST /auth/token`` (SMART Backend Services token endpoint) and ``/.well-known/smart-configuration``."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth.core import Authenticator, TokenError, smart_configuration


def _root(request: Request, public_base: str | None) -> str:
    return (public_base or str(request.base_url)).rstrip("/")


def build_auth_routes(auth: Authenticator, public_base: str | None) -> list[BaseRoute]:
    async def token(request: Request) -> Response:
        headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
        try:
            if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                raise TokenError("invalid_request", "the token request is form-encoded")
            body = await request.body()
            if len(body) > 16 * 1024:
                raise TokenError("invalid_request", "the token request is too large")
            try:
                form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=16))
            except (UnicodeDecodeError, ValueError) as exc:
                raise TokenError("invalid_request", "the token request is not valid form data") from exc
            urls = sorted(
                {
                    f"{_root(request, public_base)}/auth/token",
                    f"{str(request.base_url).rstrip('/')}/auth/token",
                }
            )
            answer = await run_in_threadpool(auth.issue, form, urls)
        except TokenError as exc:
            return JSONResponse(
                {"error": exc.error, "error_description": str(exc)}, status_code=exc.status, headers=headers
            )
        return JSONResponse(answer, headers=headers)

    async def discovery(request: Request) -> Response:
        return JSONResponse(smart_configuration(_root(request, public_base)))

    return [
        Route("/auth/token", token, methods=["POST"]),
        Route("/.well-known/smart-configuration", discovery, methods=["GET"]),
        Route("/fhir/.well-known/smart-configuration", discovery, methods=["GET"]),
    ]
