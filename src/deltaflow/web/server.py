"""The playground's web server: the page, its static files, and one WebSocket per tab.

Each WebSocket connection owns one :class:`~deltaflow.web.session.Playground`; closing
the tab closes the socket and ends the session. While the page plays, the session trains
one epoch per frame and sends an ``update`` about :data:`FRAMES_PER_SECOND` times a second.
The engine's work runs in a worker thread so one busy session never stalls the others.

Messages from the page are JSON objects with a ``type``:

``{"type": "configure", "settings": {...}}``, ``play``, ``pause``, ``step``, ``reset``
and ``{"type": "trace", "row": N}``. The server answers with ``network``, ``update``,
``trace`` and ``error`` messages (see :mod:`deltaflow.web.session`). A message that is
too long, not JSON, of an unknown type, out of bounds or too frequent gets an ``error``
for that page alone; a page that keeps sending too fast is disconnected.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from deltaflow.errors import DeltaflowError
from deltaflow.web.session import Playground

__all__ = ["FRAMES_PER_SECOND", "MAX_MESSAGE_BYTES", "MAX_SESSIONS", "create_app"]

FRAMES_PER_SECOND = 20
#: The longest message accepted from a page.
MAX_MESSAGE_BYTES = 4096
#: Sessions served at once; a further tab is told so and closed.
MAX_SESSIONS = 16
#: Messages a page may send: a burst of this many, refilled at this rate per second.
BURST, RATE = 40, 20.0
#: A page whose messages were refused for speed this many times is disconnected.
MAX_REFUSED = 100

_TYPES = ("configure", "play", "pause", "step", "reset", "trace")
#: What a message costs from the bucket: a trace runs a finite difference per parameter.
_COST = {"step": 4, "trace": 4, "pause": 4, "configure": 2, "reset": 2}


class _Bucket:
    """A token bucket: ``take()`` is False when the page sends faster than allowed."""

    def __init__(self, burst: int, rate: float) -> None:
        self.burst, self.rate = burst, rate
        self.tokens, self.last = float(burst), time.monotonic()
        self.refused = 0

    def take(self, cost: int = 1) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens < cost:
            self.refused += 1
            return False
        self.tokens -= cost
        return True


def _error(message: str) -> dict[str, str]:
    return {"type": "error", "message": message}


def parse(text: Any) -> dict[str, Any]:
    """A page's message as a dict with a known ``type``, or a DeltaflowError saying why not."""
    if not isinstance(text, str):
        raise DeltaflowError("messages must be JSON text, not binary")
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise DeltaflowError(f"message longer than {MAX_MESSAGE_BYTES} bytes refused")
    try:
        msg = json.loads(text)
    except (ValueError, RecursionError):
        raise DeltaflowError("message is not valid JSON") from None
    if not isinstance(msg, dict) or msg.get("type") not in _TYPES:
        raise DeltaflowError(f"message must be an object whose type is one of {', '.join(_TYPES)}")
    return msg


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a WebSocket's ``Origin`` is the page this server served (or absent).

    Browsers always send ``Origin``; a page from another site would carry that site's.
    Programs that send none (scripts, tests) are let in.
    """
    if origin is None:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


class _Connection:
    """One tab: its session, its socket and the frame clock."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.session = Playground()
        self.bucket = _Bucket(BURST, RATE)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_text(json.dumps(msg, allow_nan=False, separators=(",", ":")))

    async def work(self, fn: Any, *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def handle(self, msg: dict[str, Any]) -> None:
        s, kind = self.session, msg["type"]
        if kind == "configure":
            rebuilt = await self.work(s.configure, msg.get("settings"))
            if rebuilt:
                await self.send(s.describe())
            await self.send(await self.work(s.update))
        elif kind == "play":
            s.playing = True
        elif kind == "pause":
            s.playing = False
            await self.send(await self.work(s.trace))
            await self.send(await self.work(s.update))
        elif kind == "step":
            s.playing = False
            await self.send(await self.work(s.step))
            await self.send(await self.work(s.update))
        elif kind == "reset":
            await self.work(s.reset)
            await self.send(s.describe())
            await self.send(await self.work(s.update))
        elif kind == "trace":
            await self.send(await self.work(s.trace, msg.get("row")))

    async def frame(self) -> None:
        s = self.session
        try:
            await self.work(s.epoch)
        except DeltaflowError as exc:
            await self.send(_error(str(exc)))
        await self.send(await self.work(s.update))

    async def serve(self) -> None:
        await self.send(self.session.describe())
        await self.send(await self.work(self.session.update))
        period = 1.0 / FRAMES_PER_SECOND
        next_frame = time.monotonic()
        receive = asyncio.ensure_future(self.ws.receive())
        try:
            while True:
                wait = max(0.0, next_frame - time.monotonic()) if self.session.playing else None
                done, _ = await asyncio.wait({receive}, timeout=wait)
                if receive in done:
                    event = receive.result()
                    if event["type"] == "websocket.disconnect":
                        return
                    receive = asyncio.ensure_future(self.ws.receive())
                    if not await self.message(event.get("text", event.get("bytes"))):
                        return
                if self.session.playing and time.monotonic() >= next_frame:
                    next_frame = time.monotonic() + period
                    await self.frame()
        finally:
            receive.cancel()

    async def message(self, raw: Any) -> bool:
        """Handle one message; False when the page is to be disconnected."""
        problem = ""
        try:
            msg: dict[str, Any] | None = parse(raw)
        except DeltaflowError as exc:
            msg, problem = None, str(exc)
        if not self.bucket.take(_COST.get(msg["type"], 1) if msg else 1):
            if self.bucket.refused >= MAX_REFUSED:
                await self.send(_error("too many messages; disconnected"))
                await self.ws.close(code=1008)
                return False
            await self.send(
                _error(f"too many messages: at most {RATE:g} a second (a step or trace counts 4)")
            )
            return True
        if msg is None:
            await self.send(_error(problem))
            return True
        try:
            await self.handle(msg)
        except DeltaflowError as exc:
            await self.send(_error(str(exc)))
        except (ValueError, TypeError, OverflowError, MemoryError) as exc:
            # an input the checks above did not foresee: refuse it, keep the session
            await self.send(_error(f"message refused ({type(exc).__name__}: {exc})"))
        return True


#: The page, its script and its style sheet, shipped inside the package.
STATIC = Path(__file__).with_name("static")


def create_app(*, max_sessions: int = MAX_SESSIONS) -> Starlette:
    """The ASGI application: ``/`` (the page), ``/static/...`` and the ``/ws`` socket."""
    live: set[_Connection] = set()

    async def index(request: Any) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def health(request: Any) -> Response:
        return PlainTextResponse(f"sessions {len(live)}\n")

    async def socket(ws: WebSocket) -> None:
        await ws.accept()
        if not same_origin(ws.headers.get("origin"), ws.headers.get("host")):
            # another site's page in the same browser must not drive this server
            await ws.send_text(json.dumps(_error("connections from other sites are refused")))
            await ws.close(code=1008)
            return
        if len(live) >= max_sessions:
            full = f"the playground serves {max_sessions} tabs at most; close one and reload"
            await ws.send_text(json.dumps(_error(full)))
            await ws.close(code=1013)
            return
        conn = _Connection(ws)
        live.add(conn)
        try:
            await conn.serve()
        except WebSocketDisconnect:
            pass
        finally:
            live.discard(conn)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/health", health),
            WebSocketRoute("/ws", socket),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
    )
    app.state.sessions = live
    return app
