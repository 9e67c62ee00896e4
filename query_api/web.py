"""The web dashboard: the built single-page app in ``query_api/web_dist`` (committed, so the server
package carries it without Node), served at ``/``.

- ``/assets/<hashed name>``: cached for a year (the name changes when the content does), gzip when
  the client takes it (compressed once, in memory, on first request).
- the client routes (``/``, ``/sign-in``, ``/projects/…``): ``index.html``, never cached, so a
  deploy is picked up on the next load; nothing else, so API and ops paths keep their own 404s.
- Langfuse's UI paths (``/project/<id>/traces/<trace id>``, what its SDK's ``get_trace_url()`` builds;
  also ``sessions/`` and ``users/``) redirect to ours, which have the same shape under ``/projects/``.
"""

from __future__ import annotations

import gzip
import mimetypes
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

WEB_DIST = Path(__file__).parent / "web_dist"
IMMUTABLE = "public, max-age=31536000, immutable"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # The app loads only its own scripts; inline scripts (an injected <script>) never run.
    "Content-Security-Policy": ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                                "base-uri 'self'; form-action 'self'"),
}

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def _assets() -> dict[str, tuple[bytes, bytes | None, str]]:
    """name -> (raw bytes, gzip bytes or None, media type), read once from the build."""
    folder = WEB_DIST / "assets"
    out: dict[str, tuple[bytes, bytes | None, str]] = {}
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                raw = path.read_bytes()
                media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                packed = gzip.compress(raw, 6) if path.suffix in (".js", ".css", ".svg", ".json") else None
                out[path.name] = (raw, packed if packed and len(packed) < len(raw) else None, media)
    return out


@lru_cache(maxsize=1)
def _index() -> bytes | None:
    path = WEB_DIST / "index.html"
    return path.read_bytes() if path.is_file() else None


@router.get("/assets/{name}")
def asset(name: str, request: Request) -> Response:
    found = _assets().get(name)  # a dict lookup: no path from the request ever reaches the file system
    if found is None:
        raise HTTPException(404, "no such asset")
    raw, packed, media = found
    headers = {"Cache-Control": IMMUTABLE, "Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff"}
    if packed is not None and "gzip" in request.headers.get("accept-encoding", ""):
        return Response(packed, media_type=media, headers={**headers, "Content-Encoding": "gzip"})
    return Response(raw, media_type=media, headers=headers)


def app_page() -> Response:
    """index.html for a client route (``/``, ``/projects/<id>/traces/<trace id>``, …)."""
    index = _index()
    if index is None:
        return Response("The dashboard is not built: run scripts/bootstrap (needs npm) or "
                        "`npm run build` in query_api/web.\n", status_code=503, media_type="text/plain")
    return Response(index, media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-cache", **SECURITY_HEADERS})


# Client routes, each its own route rather than a catch-all: a catch-all would shadow every route
# registered after it, and an API typo must stay a JSON 404. Every project page lives under
# /projects/<id>/, so new pages need no change here.
router.add_api_route("/", app_page, methods=["GET"])
for _prefix in ("sign-in", "invite", "projects"):
    router.add_api_route(f"/{_prefix}", app_page, methods=["GET"])
    router.add_api_route(f"/{_prefix}/{{rest:path}}", app_page, methods=["GET"])


@router.get("/project/{rest:path}")
def langfuse_ui_path(rest: str, request: Request) -> RedirectResponse:
    """A Langfuse dashboard link, e.g. from ``Langfuse.get_trace_url()``: the project id is ours (the
    Langfuse SDK learns it from ``/api/public/projects``), so only the prefix changes."""
    target = "/projects/" + quote(rest.lstrip("/"), safe="/")  # always this site's path: never an open redirect
    if request.url.query:
        target += "?" + request.url.query
    return RedirectResponse(target, status_code=307)
