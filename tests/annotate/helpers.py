"""A real annotation server on a loopback port, answer files, and a signed-in HTTP client."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import httpx
import uvicorn

from limakit.annotate import db
from limakit.annotate.app import create_app
from limakit.annotate.server import bind, load_set
from tests.evaluation.helpers import write_pair as write_answers

XSS = (
    "Here is the answer.\n\n<script>alert(1)</script>\n\n<img src=x onerror=alert(2)>\n\n"
    "[click me](javascript:alert(3))"
)


class RequestLog:
    """ASGI wrapper counting the paths the server was asked for (what a browser fetched)."""

    def __init__(self, app):
        self.app, self.paths = app, Counter()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.paths[scope["path"]] += 1
        await self.app(scope, receive, send)


class Server:
    """uvicorn in a thread on a socket bound before start, so clients can connect at once."""

    def __init__(self, db_path: Path, *, secure_cookies: bool = False):
        self.db_path = db_path
        self.app = RequestLog(create_app(db_path, secure_cookies=secure_cookies))
        self.sock = bind("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def token(self, name: str, admin: bool = False) -> str:
        return issue_token(self.db_path, name, admin)

    def client(self, name: str | None = None, admin: bool = False) -> httpx.Client:
        """An HTTP client, signed in as ``name`` through the login form when a name is given."""
        c = httpx.Client(base_url=self.url, timeout=10)
        if name is not None:
            token = self.token(name, admin)
            page = c.get("/login", params={"token": token})
            r = c.post("/login", data={"token": token, "csrf": csrf_of(page.text)})
            assert r.status_code == 303, r.text
        return c


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def pair_id_of(html: str) -> str:
    return re.search(r'name="pair_id" value="([^"]+)"', html).group(1)


def make_db(d: Path, a_texts: list[str], b_texts: list[str]) -> Path:
    a, b = write_answers(d, a_texts, b_texts)
    path = d / "annotations.sqlite"
    load_set(path, a, b)
    return path


def issue_token(db_path: Path, name: str, admin: bool = False) -> str:
    conn = db.connect(db_path)
    try:
        return db.add_user(conn, name, admin=admin)
    finally:
        conn.close()
