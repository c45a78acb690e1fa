"""A small web site on 127.0.0.1 for ``http_fetch`` tests: fixed test routes plus pages a
test supplies. It runs in its own thread, so ``baton`` subprocesses can reach it too."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

PAGE = """<!doctype html>
<html><head><title>Acme &amp; Co — News</title>
<style>body { color: red }</style><script>var secret = "SCRIPT-TEXT";</script></head>
<body>
<nav><a href="/home">NAV-HOME</a> <a href="/about">NAV-ABOUT</a></nav>
<h1>Acme raises Series B</h1>
<p>Acme Corp raised   $40M
in a Series B round led by Example Ventures.</p>
<ul><li>Founded 2015</li><li>HQ: Lisbon</li></ul>
<p>Read the <a href="/press/b">press release</a> or <a href="https://example.org/x">coverage</a>.</p>
<div hidden>HIDDEN-TEXT</div>
<noscript>NOSCRIPT-TEXT</noscript>
<footer>FOOTER-TEXT</footer>
</body></html>
"""


class LocalSite:
    """An aiohttp site on 127.0.0.1 in its own thread (so subprocess tests can use it too)."""

    def __init__(self, pages: dict[str, str] | None = None) -> None:
        #: Extra HTML pages by path, served beside the built-in test routes.
        self.pages = dict(pages or {})
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.hits: list[str] = []
        self._ready = threading.Event()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalSite:
        self._thread.start()
        assert self._ready.wait(10), "the local site did not start"
        return self

    def stop(self) -> None:
        async def down() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        self._ready.set()
        self.loop.run_forever()

    async def _serve(self) -> None:
        app = web.Application()

        @web.middleware
        async def record(request: web.Request, handler: Any) -> web.StreamResponse:
            self.hits.append(request.path_qs)
            response: web.StreamResponse = await handler(request)
            return response

        app.middlewares.append(record)
        app.router.add_get("/page", lambda r: web.Response(text=PAGE, content_type="text/html"))
        app.router.add_get("/plain", self._plain)
        app.router.add_get("/data.json", self._json)
        app.router.add_get("/logo.png", self._png)
        app.router.add_get("/raw", self._raw)
        app.router.add_get("/blob", self._blob)
        app.router.add_get("/big", self._big)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/hop/{n}", self._hop)
        app.router.add_get("/to", self._to)
        app.router.add_get("/missing", lambda r: web.Response(status=404, text="nope"))
        for path, html in self.pages.items():
            app.router.add_get(
                path, lambda r, html=html: web.Response(text=html, content_type="text/html")
            )
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def _plain(self, request: web.Request) -> web.Response:
        return web.Response(text="line one\n  line two", content_type="text/plain")

    async def _json(self, request: web.Request) -> web.Response:
        return web.json_response({"revenue": "12M"})

    async def _png(self, request: web.Request) -> web.Response:
        return web.Response(body=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, content_type="image/png")

    async def _raw(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()  # aiohttp labels it application/octet-stream
        await response.prepare(request)
        await response.write(b"just words, no type")
        await response.write_eof()
        return response

    async def _blob(self, request: web.Request) -> web.Response:
        return web.Response(body=b"PK\x03\x04" + b"\x00" * 64)  # application/octet-stream

    async def _big(self, request: web.Request) -> web.Response:
        words = " ".join(f"word{i}" for i in range(20_000))
        return web.Response(
            text=f"<html><body><p>{words}</p></body></html>", content_type="text/html"
        )

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.Response(text="too late")

    async def _hop(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        target = "/page" if n <= 1 else f"/hop/{n - 1}"
        raise web.HTTPFound(target)

    async def _to(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])
