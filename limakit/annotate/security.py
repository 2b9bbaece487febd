"""Headers and limits every response and request of the annotation app goes through.

The Content-Security-Policy allows scripts, styles and form posts from the app itself only (its one
static JS file; no inline script), and no images, frames or other loads at all, so even a rendering
bug could not make model output run code or fetch anything. Request bodies are capped before the
app reads them.
"""

from __future__ import annotations

from limakit.core.asgi import BodyLimit

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'none'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
MAX_BODY = 64 * 1024


class GuardMiddleware:
    """Pure ASGI middleware: security headers on every response (the 413 of the body cap too)."""

    def __init__(self, app, max_body: int = MAX_BODY):
        self.app = BodyLimit(app, max_body, _too_large(max_body))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in dict(HEADERS)]
                if not any(k == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers + HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _too_large(limit: int):
    body = f"request body over {limit} bytes\n".encode()

    async def refuse(scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())],
            }
        )  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    return refuse
