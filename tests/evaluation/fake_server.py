"""A real OpenAI-compatible HTTP server on loopback whose replies a test scripts.

``behaviour(body, n)`` gets the request JSON and the 0-based call number and returns a
:class:`Act`: status, reply text, headers and a delay. Every request is recorded in ``calls``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Act:
    text: object = "[[C]]"  # the message content: text, or what a faulty server sends instead
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    body: bytes | None = None  # sent verbatim instead of a well-formed reply (a broken body)
    content_type: str = "application/json"


def answers_in(body: dict) -> tuple[str, str]:
    """The two answers of a pairwise prompt, in the order shown (LIMA or MT-Bench markers)."""
    user = body["messages"][-1]["content"]
    for a_re, b_re in (
        (r"\[Answer A\]\n(.*?)\n\[End of Answer A\]", r"\[Answer B\]\n(.*?)\n\[End of Answer B\]"),
        (
            r"\[The Start of Assistant A's Answer\]\n(.*?)\n\[The End of Assistant A's Answer\]",
            r"\[The Start of Assistant B's Answer\]\n(.*?)\n\[The End of Assistant B's Answer\]",
        ),
    ):
        ma, mb = re.search(a_re, user, re.S), re.search(b_re, user, re.S)
        if ma and mb:
            return ma.group(1), mb.group(1)
    raise AssertionError("not a pairwise prompt")


def prefer_marked(body: dict, n: int) -> Act:
    """A correct judge: prefers the answer containing GOOD; [[C]] when both or neither do."""
    first, second = answers_in(body)
    g1, g2 = "GOOD" in first, "GOOD" in second
    return Act(
        "Reasoning.\n[[A]]" if g1 and not g2 else "Reasoning.\n[[B]]" if g2 and not g1 else "[[C]]"
    )


def always_first(body: dict, n: int) -> Act:
    return Act("The first one is better. [[A]]")


def broken_json(body: dict, n: int) -> Act:
    """HTTP 200 with a JSON content type and a cut-off body, as a faulty proxy sends."""
    return Act(body=b'{"id": "c", "object": "chat.completion", "choices": [{"mess')


def html_page(body: dict, n: int) -> Act:
    """HTTP 200 with an HTML page, as a proxy or a login wall in front of the judge sends."""
    return Act(body=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")


class FakeServer:
    def __init__(self, behaviour: Callable[[dict, int], Act] = prefer_marked) -> None:
        self.behaviour = behaviour
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:  # /stats: the call count, for a server in another process
                data = json.dumps({"calls": len(server.calls)}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.calls)
                    server.calls.append(
                        {**body, "_auth": self.headers.get("Authorization"), "_t": time.monotonic()}
                    )
                act = server.behaviour(body, n)
                if act.delay:
                    time.sleep(act.delay)
                if act.status == 200:
                    payload = {
                        "id": f"c{n}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "judge"),
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": act.text},
                            }
                        ],
                        "usage": {
                            "prompt_tokens": 100,
                            "completion_tokens": 10,
                            "total_tokens": 110,
                        },
                    }
                else:
                    payload = {"error": {"message": act.text, "type": "test", "code": act.status}}
                data = json.dumps(payload).encode() if act.body is None else act.body
                try:
                    self.send_response(act.status)
                    self.send_header("Content-Type", act.content_type)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in act.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def slow_marked(body: dict, n: int, delay: float = 0.2) -> Act:
    act = prefer_marked(body, n)
    act.delay = delay
    return act


if __name__ == "__main__":  # serve in its own process: prints the URL, runs until killed
    import functools
    import sys

    delay = float(sys.argv[1]) if len(sys.argv) > 1 else 0.2
    with FakeServer(functools.partial(slow_marked, delay=delay)) as srv:
        print(srv.url, flush=True)
        srv.thread.join()
