"""/docs and /redoc work offline (api_docs.py): the pages load only the runtime's own copies of
Swagger UI and ReDoc, which are npm's bytes at the versions hack/docs-assets.sh pins."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from aiops_runtime.api_docs import STATIC_DIR
from aiops_runtime.settings import RuntimeSettings
from tests.runtime.runtime_helpers import app_client

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every URL an HTML page can make the browser load or open.
URL_ATTRIBUTE = re.compile(r"""(?:src|href|spec-url|url)\s*[=:]\s*["']([^"']*)["']""")


@pytest.fixture
async def docs_client(
    make_settings: Callable[..., RuntimeSettings],
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(make_settings(api_docs=True)) as client:
        yield client


def urls_in(page: str) -> list[str]:
    urls = URL_ATTRIBUTE.findall(page)
    assert urls, "the page loads nothing: the pattern is out of date"
    return urls


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_page_names_no_other_host(docs_client: httpx.AsyncClient, path: str) -> None:
    response = await docs_client.get(path)
    assert response.status_code == 200
    page = response.text
    for url in urls_in(page):
        assert re.match(r"/[^/]", url), f"{path} loads {url} (not a path on this server)"
    assert "http://" not in page
    assert "https://" not in page
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "http" not in policy


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_every_asset_a_page_loads_is_served(
    docs_client: httpx.AsyncClient, path: str
) -> None:
    page = (await docs_client.get(path)).text
    for url in urls_in(page):
        response = await docs_client.get(url)
        assert response.status_code == 200, url
        if url.startswith("/docs/assets/"):
            packaged = STATIC_DIR / url.removeprefix("/docs/assets/")
            assert response.content == packaged.read_bytes()


async def test_swagger_ui_does_not_call_the_online_validator(
    docs_client: httpx.AsyncClient,
) -> None:
    assert '"validatorUrl": null' in (await docs_client.get("/docs")).text


async def test_the_documented_api_has_the_protocol_routes(docs_client: httpx.AsyncClient) -> None:
    page = (await docs_client.get("/docs")).text
    (document,) = re.findall(r"url: '([^']+)'", page)
    paths = (await docs_client.get(document)).json()["paths"]
    assert "/predict" in paths
    assert "/v2/models/{model_name}/infer" in paths


async def test_assets_are_not_served_while_docs_are_off(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/swagger-ui/swagger-ui.css")
    assert response.status_code == 404


def test_assets_are_the_pinned_npm_bytes() -> None:
    """SHA256SUMS is what hack/docs-assets.sh checks a re-fetch against (make docs-assets)."""
    listed = {}
    for line in (STATIC_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    present = {
        str(path.relative_to(STATIC_DIR))
        for path in STATIC_DIR.rglob("*")
        if path.is_file() and path.name != "SHA256SUMS"
    }
    assert present == set(listed)
    for name, digest in listed.items():
        assert hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize(
    ("variable", "asset"),
    [
        ("SWAGGER_UI_VERSION", "swagger-ui/swagger-ui-bundle.js"),
        ("REDOC_VERSION", "redoc/redoc.standalone.js"),
    ],
)
def test_assets_are_the_versions_the_script_pins(variable: str, asset: str) -> None:
    script = (REPO_ROOT / "hack" / "docs-assets.sh").read_text()
    (version,) = re.findall(rf"^{variable}=(\S+)", script, re.MULTILINE)
    assert f'"{version}"' in (STATIC_DIR / asset).read_text()
