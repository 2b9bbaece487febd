"""`lima annotate serve` as a real process: several annotators at once, then kill -9 and a
restart lose no verdict the server acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.annotate.helpers import csrf_of, issue_token, pair_id_of, write_answers

PEOPLE = ["ana", "ben", "cai", "dee"]


def start(db_path, *extra) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "limakit", "annotate", "serve", "--db", str(db_path),
         "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stdout.readline()  # printed once the socket listens
    assert line.startswith("serving on http://127.0.0.1:"), (line, proc.stderr.read())
    return proc, line.split()[-1]


def sign_in(url: str, db_path, name: str) -> httpx.Client:
    token = issue_token(db_path, name)
    c = httpx.Client(base_url=url, timeout=30)
    page = c.get("/login", params={"token": token})
    assert c.post("/login", data={"token": token, "csrf": csrf_of(page.text)}).status_code == 303
    return c


def annotate_all(c: httpx.Client) -> int:
    acknowledged = 0
    while 'name="pair_id"' in (page := c.get("/sets/1").text):
        r = c.post("/sets/1/verdict", data={"pair_id": pair_id_of(page), "choice": "A",
                                            "csrf": csrf_of(page)})  # fmt: skip
        assert r.status_code == 303
        acknowledged += 1
    return acknowledged


def test_concurrent_annotators_and_kill_9_lose_nothing(tmp_path):
    a, b = write_answers(tmp_path, [f"a{i}" for i in range(6)], [f"b{i}" for i in range(6)])
    path = tmp_path / "ann.sqlite"
    proc, url = start(path, "--a", str(a), "--b", str(b))
    try:
        clients = [sign_in(url, path, name) for name in PEOPLE]
        with ThreadPoolExecutor(len(clients)) as pool:
            counts = list(pool.map(annotate_all, clients))
        assert counts == [6] * len(PEOPLE)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    proc, url = start(path)  # the sets are in the database: no --a/--b needed
    try:
        for name in PEOPLE:
            mine = sign_in(url, path, name).get("/api/verdicts").json()["verdicts"]
            assert len(mine) == 6 and {v["annotator"] for v in mine} == {name}
    finally:
        proc.terminate()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
