"""`/openapi.json` and `/docs` (Swagger UI), for signed-in users only (bearer token or the dashboard cookie)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from api.deps import CurrentUser

PREFIX = ""
router = APIRouter(include_in_schema=False)


@router.get("/openapi.json")
async def openapi(request: Request, user: CurrentUser) -> JSONResponse:
    """The OpenAPI document of this API."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs(request: Request, user: CurrentUser) -> HTMLResponse:
    """Swagger UI over /openapi.json (the browser sends the dashboard cookie)."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} - docs")
