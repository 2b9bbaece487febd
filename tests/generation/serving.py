"""`lima serve`'s app on a free loopback port, for the server tests."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import uvicorn

from limakit.generation.server import create_app
from limakit.models import LoadedModel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model, tok, model_name: str = "lima-test", **kw):
    """(server, thread, base url, app): uvicorn serving ``create_app`` in a daemon thread, over
    ``model`` and ``tok`` (a stand-in tokenizer, say) in limakit's default format."""
    return start_app(create_app(LoadedModel.of(model, tok), model_name=model_name, **kw))


def start_app(app):
    """(server, thread, base url, app): uvicorn serving an app already made."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    return server, thread, f"http://127.0.0.1:{port}/v1", app


@contextmanager
def serving(model, tok, **kw):
    """``with serving(model, tok) as (url, app):`` a server that stops at the end of the block."""
    app = create_app(LoadedModel.of(model, tok), **{"model_name": "lima-test", **kw})
    with serving_app(app) as served:
        yield served


@contextmanager
def serving_app(app):
    """``with serving_app(app) as (url, app):`` serves an app made elsewhere (by ``lima serve``)."""
    server, thread, url, app = start_app(app)
    try:
        yield url, app
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def raw_http(port: int, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a hand-made HTTP/1.1 request on a socket; (status, response bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data or not _complete(data):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _complete(data: bytes) -> bool:
    head, _, rest = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(rest) >= int(line.split(b":")[1])
    return False
