"""Running the app: load answer sets into the database, bind, announce the address, serve.

The listening socket is bound before the address is announced (``lima annotate serve`` prints it
on stdout), so whoever reads the address (a person, a test, a script) can connect at once;
``port=0`` picks a free port.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable

from limakit.annotate import db
from limakit.core.console import warn
from limakit.core.errors import LimaError
from limakit.evaluation.pairs import pair_answers


def load_set(
    db_path: str | os.PathLike, a_path, b_path, name: str | None = None
) -> tuple[db.SetInfo, int, int]:
    """Pair two answer files and store them as a set; returns it with the unmatched counts."""
    ps = pair_answers(a_path, b_path)
    conn = db.connect(db_path, create=True)
    try:
        s = db.add_set(conn, ps, name)
    finally:
        conn.close()
    return s, len(ps.only_a), len(ps.only_b)


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise LimaError(f"cannot listen on {host}:{port} ({e.strerror})") from None
    sock.listen(128)
    return sock


def serve(
    db_path: str | os.PathLike,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    secure_cookies: bool = False,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve the app until interrupted; ``on_listening("http://HOST:PORT")`` once bound."""
    import uvicorn

    from limakit.annotate.app import create_app

    conn = db.connect(db_path)
    try:
        sets = db.list_sets(conn)
    finally:
        conn.close()
    if not sets:
        raise LimaError(f"{db_path}: no answer sets yet; give --a and --b")
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    if on_listening is not None:
        on_listening(f"http://{shown}:{bound}")
    if host not in ("127.0.0.1", "::1", "localhost") and not secure_cookies:
        warn("listening beyond this machine; put it behind HTTPS before sharing links")
    app = create_app(db_path, secure_cookies=secure_cookies)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
