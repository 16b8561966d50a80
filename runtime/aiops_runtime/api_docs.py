"""The API documentation pages, /docs (Swagger UI) and /redoc (ReDoc), served with the runtime's
own copies of their assets (static/, fetched at pinned versions by hack/docs-assets.sh): the
pages work without Internet access and name no other host."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).with_name("static")
ASSETS = "/docs/assets"
# The browser may load nothing from elsewhere: ReDoc's sidebar footer would fetch a logo from
# its vendor's CDN. Inline script and styles are FastAPI's page templates; ReDoc runs a worker
# from a blob and Swagger UI draws its icons from data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'"
)


def add_api_docs(app: FastAPI, openapi_url: str) -> None:
    """Serve /docs, /redoc and their assets (call only when API_DOCS is on)."""
    swagger_ui = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{ASSETS}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
        # Swagger UI's default sends the document's URL to an online validator.
        swagger_ui_parameters={"validatorUrl": None},
    )
    redoc = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{app.title} - ReDoc",
        redoc_js_url=f"{ASSETS}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
    for path, page in (("/docs", swagger_ui), ("/redoc", redoc)):
        app.add_api_route(
            path, _serve_page(bytes(page.body)), methods=["GET"], include_in_schema=False
        )
    app.mount(ASSETS, StaticFiles(directory=STATIC_DIR), name="docs-assets")


def _serve_page(html: bytes) -> Callable[[Request], Awaitable[Response]]:
    headers = {"content-security-policy": CONTENT_SECURITY_POLICY}

    async def page(request: Request) -> Response:
        return HTMLResponse(html, headers=headers)

    return page
