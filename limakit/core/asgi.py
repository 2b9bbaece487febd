"""One ASGI middleware both HTTP servers (``lima serve``, ``lima annotate serve``) put first.

:class:`BodyLimit` caps request bodies: a body whose declared length is over the cap is refused
before a byte of it is read; a chunked one is counted as it arrives and refused once it passes
the cap. The app then gets the whole (small) body in one piece. Each server answers the refusal
in its own shape (OpenAI's error JSON, a plain page), through the ``too_large`` ASGI app it gives.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

# The ASGI shapes, as Starlette spells them, so a Starlette app is an `Asgi` and back.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    def __init__(self, app: Asgi, max_bytes: int, too_large: Asgi):
        self.app, self.max_bytes, self.too_large = app, max_bytes, too_large

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self.too_large(scope, receive, send)
        chunks: list[bytes] = []
        seen, more = 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunks.append(message.get("body", b""))
            seen += len(chunks[-1])
            if seen > self.max_bytes:
                return await self.too_large(scope, receive, send)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # later messages: a disconnect, which the app may wait for

        await self.app(scope, replay, send)
