"""`/openapi.json` and `/docs` (Swagger UI), for signed-in users only (bearer token or the dashboard cookie).

Swagger UI's script and stylesheet are served from package data (api/dashboard/static/vendor, `make vendor`),
so /docs works on a PC without internet access.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, swagger_ui_default_parameters
from fastapi.responses import HTMLResponse, JSONResponse

from api.dashboard.render import static_url
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
    return get_swagger_ui_html(
        openapi_url="/openapi.json", title=f"{request.app.title} - docs",
        swagger_js_url=static_url("vendor/swagger-ui-bundle.js"), swagger_css_url=static_url("vendor/swagger-ui.css"),
        swagger_favicon_url="data:,",  # no icon rather than one fetched from the internet
        swagger_ui_parameters={**swagger_ui_default_parameters, "validatorUrl": None})  # no online validator
