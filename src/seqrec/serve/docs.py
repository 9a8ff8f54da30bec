"""The API docs pages (/docs: Swagger UI, /redoc: ReDoc) served from local files.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so on a machine without internet
access /docs is a blank page. The JavaScript and CSS come instead from the `fastapi-offline`
package (MIT; it ships the swagger-ui-dist 5.x and ReDoc 2.x bundles and follows their
releases), mounted under ``/docs-assets``: the pages then need nothing but this server. Without
that package (a partial install) the server falls back to FastAPI's CDN pages, which is still
correct wherever the network allows it.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSET_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def local_assets() -> str | None:
    """The folder holding the Swagger UI / ReDoc files, or None when fastapi-offline is absent."""
    try:
        folder = resources.files("fastapi_offline") / "static"
    except ModuleNotFoundError:
        return None
    if not all((folder / name).is_file() for name in ASSET_FILES):
        return None
    return str(folder)


def docs_urls(assets: str | None) -> dict[str, str | None]:
    """FastAPI(**...) arguments: its CDN pages off when the local files exist."""
    return {"docs_url": None, "redoc_url": None} if assets else {}


def add_local_docs(app: FastAPI, assets: str | None) -> None:
    """/docs, /docs/oauth2-redirect and /redoc over the files in ``assets`` (no-op if None)."""
    if assets is None:
        return
    app.mount(ASSETS_URL, StaticFiles(directory=assets), name="docs-assets")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"validatorUrl": None},  # no call to validator.swagger.io
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
