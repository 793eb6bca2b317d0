"""The browser joiner's page: the committed bundle is what its sources build, fits its budget,
and the server hands out exactly three fixed files at /j/, with headers that let the page run
its own script and nothing else. The server runs on a real socket; hostile requests are sent
as raw bytes, so no client library tidies a path before the server sees it."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
import shutil
import subprocess
import tomllib
from collections.abc import AsyncIterator, Mapping
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from beach_cli.server import page
from beach_cli.server.app import SignalServer, start_server

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "beach_cli" / "web" / "static"
T = 5.0  # seconds for any single network step
JS_BUDGET = 200_000  # bytes of the page's JavaScript, gzipped

# What web/build.mjs hashes into SOURCES: keep the two in step.
FIXED_INPUTS = ("web/build.mjs", "web/index.html", "web/package-lock.json", "web/package.json")
OUTPUTS = ("LICENSES.txt", "beach.css", "beach.js", "index.html")
SERVED = {
    "/j/": ("index.html", "text/html; charset=utf-8", "no-store"),
    "/j/beach.js": ("beach.js", "text/javascript; charset=utf-8", "no-cache"),
    "/j/beach.css": ("beach.css", "text/css; charset=utf-8", "no-cache"),
}
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
}


# -- the committed bundle --------------------------------------------------------------------


def digest_lines(paths: list[str], base: Path) -> list[str]:
    """`<sha256>  <path>` lines, sorted by path, as web/build.mjs writes them."""
    return [f"{hashlib.sha256((base / p).read_bytes()).hexdigest()}  {p}\n" for p in sorted(paths)]


def expected_sources(root: Path) -> list[str]:
    """The non-comment lines SOURCES must hold for the tree at `root`."""
    src = root / "web" / "src"
    found = [p.relative_to(root).as_posix() for p in src.rglob("*") if p.is_file()]
    inputs = digest_lines([*FIXED_INPUTS, *found], root)
    outputs = digest_lines(list(OUTPUTS), root / "beach_cli" / "web" / "static")
    total = hashlib.sha256("".join(inputs).encode()).hexdigest()
    return [
        f"sources {total}\n",
        *(f"input {x}" for x in inputs),
        *(f"output {x}" for x in outputs),
    ]


def staleness(root: Path) -> str | None:
    """Why the bundle at `root` is not the build of its sources, or None if it is."""
    sources = root / "beach_cli" / "web" / "static" / "SOURCES"
    if not sources.exists():
        return "beach_cli/web/static/SOURCES is missing: run `make web`"
    recorded = [x for x in sources.read_text().splitlines(keepends=True) if not x.startswith("#")]
    expected = expected_sources(root)
    if recorded == expected:
        return None
    changed = sorted(
        {line.split()[-1] for line in set(recorded) ^ set(expected) if line.startswith("input")}
    )
    edited = sorted(
        {line.split()[-1] for line in set(recorded) ^ set(expected) if line.startswith("output")}
    )
    why = []
    if changed:
        why.append(f"its sources changed since it was built ({', '.join(changed)})")
    if edited:
        why.append(f"built files differ from what the build wrote ({', '.join(edited)})")
    return (
        f"the committed page in beach_cli/web/static is stale: {'; '.join(why) or 'SOURCES'}"
        " - run `make web` and commit the result"
    )


def test_committed_bundle_is_built_from_the_sources_in_the_tree() -> None:
    assert staleness(ROOT) is None, staleness(ROOT)


def copy_of_tree(tmp_path: Path) -> Path:
    for rel in (*FIXED_INPUTS, "web/src"):
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if (ROOT / rel).is_dir():
            shutil.copytree(ROOT / rel, target)
        else:
            shutil.copy(ROOT / rel, target)
    shutil.copytree(STATIC, tmp_path / "beach_cli" / "web" / "static")
    return tmp_path


@pytest.mark.parametrize(
    "change,named",
    [
        ("web/src/main.js", "main.js"),
        ("web/package-lock.json", "package-lock.json"),
        ("web/src/new.js", "new.js"),  # a module added and not built
        ("beach_cli/web/static/beach.js", "beach.js"),  # the bundle edited by hand
    ],
)
def test_a_stale_bundle_is_caught(tmp_path: Path, change: str, named: str) -> None:
    root = copy_of_tree(tmp_path)
    target = root / change
    target.write_bytes((target.read_bytes() if target.exists() else b"") + b"\n// changed\n")
    why = staleness(root)
    assert why is not None and named in why and "run `make web`" in why, why


@pytest.mark.e2e  # runs node
def test_the_build_reproduces_the_committed_files(tmp_path: Path) -> None:
    node = shutil.which("node")
    assert node, "the build needs Node.js (make web)"
    assert (ROOT / "web" / "node_modules").is_dir(), "run `make web` (it installs web/node_modules)"
    subprocess.run(
        [node, str(ROOT / "web" / "build.mjs"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in (*OUTPUTS, "SOURCES"):
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), name


def test_page_javascript_fits_its_budget(record_property: pytest.RecordProperty) -> None:
    js = (STATIC / "beach.js").read_bytes()
    packed = len(gzip.compress(js, compresslevel=9, mtime=0))
    record_property("beach_js_bytes", len(js))
    record_property("beach_js_gzipped_bytes", packed)
    assert packed <= JS_BUDGET, f"beach.js is {packed} bytes gzipped (budget {JS_BUDGET})"
    assert b"sourceMappingURL" not in js  # no source map is shipped, nor asked for


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_in: dict[str, str] = {}
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._open.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            self._open.remove(tag)

    def handle_data(self, data: str) -> None:
        for tag in self._open:
            self.text_in[tag] = self.text_in.get(tag, "") + data


def test_index_html_has_no_inline_code_and_loads_the_bundle() -> None:
    parsed = Tags()
    parsed.feed((STATIC / "index.html").read_text())
    tags = parsed.tags
    scripts = [a for t, a in tags if t == "script"]
    assert scripts == [{"defer": None, "src": "beach.js"}]
    assert parsed.text_in.get("script", "").strip() == ""
    assert not any(t == "style" for t, _ in tags)
    assert ("link", {"rel": "stylesheet", "href": "beach.css"}) in tags
    assert ("meta", {"name": "referrer", "content": "no-referrer"}) in tags
    assert any(a.get("id") == "terminal" for _, a in tags)
    assert any(a.get("id") == "status" for _, a in tags)
    for tag, attrs in tags:  # no inline style or handler, nothing loaded from elsewhere
        assert not any(k == "style" or k.startswith("on") for k in attrs), (tag, attrs)
        for k in ("src", "href"):
            assert ":" not in (attrs.get(k) or ""), (tag, attrs)


def test_package_data_covers_every_built_file() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["beach_cli"]
    for path in STATIC.iterdir():
        rel = path.relative_to(ROOT / "beach_cli").as_posix()
        assert any(fnmatch(rel, p) for p in patterns), f"{rel} would not be installed"
    found = page.assets()  # what the server reads, through importlib.resources
    assert found is not None
    for name, asset in found.items():
        assert asset.body == (STATIC / name).read_bytes()


# -- the CSP --------------------------------------------------------------------------------


def directives(csp: str) -> dict[str, list[str]]:
    parsed = {}
    for part in csp.split(";"):
        name, *values = part.split()
        assert name not in parsed, f"{name} twice"
        parsed[name] = values
    return parsed


def test_csp_allows_only_the_pages_own_script() -> None:
    csp = directives(page.CSP)
    assert "'unsafe-eval'" not in page.CSP and "'wasm-unsafe-eval'" not in page.CSP
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, nonce, hash, data: or blob:
    assert csp["connect-src"] == ["'self'"]
    assert csp["style-src"] == ["'self'", "'unsafe-inline'"]  # xterm.js's own <style> and cells
    for name in ("base-uri", "form-action", "frame-ancestors"):
        assert csp[name] == ["'none'"], name
    # Nothing else: images, fonts, frames, workers and objects fall to default-src 'none'.
    assert set(csp) == {
        "default-src",
        "script-src",
        "style-src",
        "connect-src",
        "base-uri",
        "form-action",
        "frame-ancestors",
    }


# -- the server -----------------------------------------------------------------------------


@pytest.fixture
async def port() -> AsyncIterator[int]:
    runner, bound = await asyncio.wait_for(start_server("127.0.0.1", 0, SignalServer()), T)
    try:
        yield bound
    finally:
        await asyncio.wait_for(runner.cleanup(), 10)


def assert_page_headers(headers: Mapping[str, str], path: str) -> None:
    assert headers.get("Content-Security-Policy") == page.CSP, path
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (path, name)


@pytest.mark.parametrize("path", list(SERVED))
@pytest.mark.parametrize("method", ["GET", "HEAD"])
async def test_page_is_served_with_its_headers(port: int, path: str, method: str) -> None:
    name, content_type, cache = SERVED[path]
    body = (STATIC / name).read_bytes()
    timeout = aiohttp.ClientTimeout(total=T)
    async with (
        aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http,
        http.request(
            method, f"http://127.0.0.1:{port}{path}", headers={"Accept-Encoding": "identity"}
        ) as resp,
    ):
        assert resp.status == 200
        assert_page_headers(resp.headers, path)
        assert resp.headers["Content-Type"] == content_type
        assert resp.headers["Cache-Control"] == cache
        assert "Content-Encoding" not in resp.headers
        assert int(resp.headers["Content-Length"]) == len(body)
        assert await resp.read() == (body if method == "GET" else b"")


@pytest.mark.parametrize("path", ["/j/beach.js", "/j/beach.css"])
async def test_assets_travel_gzipped_and_revalidate(port: int, path: str) -> None:
    body = (STATIC / SERVED[path][0]).read_bytes()
    url = f"http://127.0.0.1:{port}{path}"
    timeout = aiohttp.ClientTimeout(total=T)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False) as http:
        async with http.get(url, headers={"Accept-Encoding": "gzip, deflate"}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Encoding"] == "gzip"
            assert "Accept-Encoding" in resp.headers["Vary"]
            assert gzip.decompress(await resp.read()) == body
            etag = resp.headers["ETag"]
        async with http.get(url, headers={"If-None-Match": etag}) as resp:
            assert resp.status == 304
            assert_page_headers(resp.headers, path)
            assert await resp.read() == b""
        async with http.get(url, headers={"If-None-Match": '"something-else"'}) as resp:
            assert resp.status == 200


async def test_j_redirects_to_the_page(port: int) -> None:
    timeout = aiohttp.ClientTimeout(total=T)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"http://127.0.0.1:{port}/j", allow_redirects=False) as resp,
    ):
        assert resp.status == 301
        assert resp.headers["Location"] == "/j/"  # no fragment: the browser keeps the token's
        assert_page_headers(resp.headers, "/j")


async def raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Send `request` as it is; the status and the whole response."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), T)
    try:
        writer.write(request)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), T)
    finally:
        writer.close()
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", data)
    assert status, data[:200]
    return int(status.group(1)), data


def get(path: str, host: bytes = b"Host: beach\r\n", method: str = "GET") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\n".encode()
        + host
        + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
    )


def assert_no_file(data: bytes) -> None:
    """A refusal: aiohttp's few words, none of a file's contents."""
    body = data.split(b"\r\n\r\n", 1)[1]
    assert len(body) < 200, body[:200]
    for name in OUTPUTS:
        assert (STATIC / name).read_bytes()[:64] not in body


HOSTILE_PATHS = [
    "/j/../",
    "/j/../healthz",
    "/j/..%2fhealthz",
    "/j/%2e%2e/keys",
    "/j/%2E%2E/%2E%2E/etc/passwd",
    "/j/./beach.js",
    "/j//beach.js",
    "//j/",
    "/x/../j/",
    "/j/beach.js%00",
    "/j/beach.js/",
    "/j/beach.js/..",
    "/j/index.html",  # served as /j/ only
    "/j/SOURCES",
    "/j/LICENSES.txt",
    "/j/static/beach.js",
    "/j/../beach_cli/keys.py",
    "/j/%5c..%5cpyproject.toml",
    "/J/",
    "/j/" + "a" * 8000,  # long, but within aiohttp's 8190-byte request line
]


@pytest.mark.parametrize("path", HOSTILE_PATHS, ids=lambda p: p[:40])
async def test_hostile_paths_get_404_and_never_a_file(port: int, path: str) -> None:
    status, data = await raw(port, get(path))
    assert status == 404, data[:300]
    assert_no_file(data)


async def test_a_path_longer_than_a_request_line_is_refused(port: int) -> None:
    status, data = await raw(port, get("/j/" + "a" * 20_000))
    assert status in (400, 414), data[:300]  # aiohttp's parser, before any route
    assert_no_file(data)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"])
@pytest.mark.parametrize("path", ["/j/", "/j/beach.js", "/j"])
async def test_other_methods_get_405(port: int, method: str, path: str) -> None:
    status, data = await raw(port, get(path, method=method))
    assert status == 405, data[:300]
    assert_no_file(data)


ODD_HOSTS = [
    b"Host: ../../etc\r\n",
    b"Host: /j/../..\r\n",
    b"Host: [::1\r\n",
    b"Host: " + b"a" * 4000 + b"\r\n",
    b"Host: evil.example:7777\r\n",
]


@pytest.mark.parametrize("host", ODD_HOSTS, ids=lambda h: h[6:30].decode())
async def test_odd_host_headers_choose_no_file(port: int, host: bytes) -> None:
    # The Host header never takes part in choosing a file: a fixed route serves its one file
    # whatever it says, and any other path is a 404.
    status, data = await raw(port, get("/j/passwd", host))
    assert status == 404, data[:300]
    assert_no_file(data)
    status, data = await raw(port, get("/j/beach.css", host))
    assert status == 200
    assert data.split(b"\r\n\r\n", 1)[1] == (STATIC / "beach.css").read_bytes()


@pytest.mark.parametrize("host", [b"", b"Host: a\r\nHost: b\r\n"], ids=["none", "two"])
async def test_a_missing_or_doubled_host_is_a_bad_request(port: int, host: bytes) -> None:
    status, data = await raw(port, get("/j/", host))
    assert status == 400, data[:300]
    assert_no_file(data)
