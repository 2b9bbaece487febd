"""Queue time of a small request sent behind a large one, with and without fair admission.

``lima serve`` (packaged SmolLM2-135M, 16 batch slots) gets one large ``/v1/completions`` request
(64 prompts, 16 new tokens each: the default ``--max-sequences-per-request``), and, once the engine
is working on it, a 2-token chat request. Reported for the small request: its queue time
(``usage.queue_time_s``: arrival to its batch slot), how many of the large request's sequences took
a slot before it, and its whole latency. Two admission orders, in the same process and on the same
warm model:

- ``fifo``: first come, first served (limakit before fair admission): every sequence of the large
  request goes before the small one;
- ``fair``: the waiting requests take turns (``limakit.generation.admission``).

Each order runs ``--trials`` times (alternating); the medians are printed.
Usage: ``.venv/bin/python bench/queue_time.py [--device cpu] [--trials 3]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import httpx  # noqa: E402

from limakit.generation.server import create_app  # noqa: E402
from limakit.models import load_model_for  # noqa: E402

BIG_PROMPTS, BIG_TOKENS, SLOTS = 64, 16, 16


def start(app) -> tuple[object, str]:
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}/v1"


def trial(url: str, engine, order: str) -> dict:
    """One large request, then a small one once the engine holds the large one's sequences."""
    added: list = []
    real_add, real_push = engine.add, engine.waiting.push

    def add(req):
        added.append(req)
        return real_add(req)

    engine.add = add
    if order == "fifo":  # every sequence in one group: the order they came in
        engine.waiting.push = lambda item, group=None: real_push(item, None)
    try:
        big = {
            "model": "bench",
            "prompt": [f"Question {i}: tell me about the sea." for i in range(BIG_PROMPTS)],
            "max_tokens": BIG_TOKENS,
            "seed": 0,
        }
        done: dict = {}
        thread = threading.Thread(
            target=lambda: done.update(r=httpx.post(url + "/completions", json=big, timeout=600))
        )
        thread.start()
        while len(added) < BIG_PROMPTS or not engine.active:  # the large one is being served
            time.sleep(0.005)
        small = {
            "model": "bench",
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "max_tokens": 2,
            "seed": 0,
        }
        t = time.perf_counter()
        r = httpx.post(url + "/chat/completions", json=small, timeout=600)
        latency = time.perf_counter() - t
        thread.join()
    finally:
        engine.add = real_add
        engine.waiting.push = real_push
    assert r.status_code == 200 and done["r"].status_code == 200, (r.text, done["r"].text)
    mine = added[BIG_PROMPTS]
    ahead = sum(1 for req in added[:BIG_PROMPTS] if req.admitted < mine.admitted)
    return {"queue": r.json()["usage"]["queue_time_s"], "ahead": ahead, "latency": latency}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--trials", type=int, default=3)
    args = ap.parse_args()
    loaded = load_model_for("smollm2-135m", args.device, args.dtype)
    app = create_app(loaded, model_name="bench", max_batch=SLOTS)
    server, url = start(app)
    engine = app.state.engine
    trial(url, engine, "fair")  # warm-up
    results: dict[str, list[dict]] = {"fifo": [], "fair": []}
    for _ in range(args.trials):
        for order in ("fifo", "fair"):
            results[order].append(trial(url, engine, order))
    server.should_exit = True
    print(
        f"small chat request behind {BIG_PROMPTS} x {BIG_TOKENS} tokens, {SLOTS} slots, "
        f"{args.device} {args.dtype}, median of {args.trials}:"
    )
    print(f"{'order':6} {'queue_time_s':>12} {'ahead of it':>12} {'latency_s':>10}")
    for order, rows in results.items():
        queue = statistics.median(r["queue"] for r in rows)
        ahead = statistics.median(r["ahead"] for r in rows)
        latency = statistics.median(r["latency"] for r in rows)
        print(f"{order:6} {queue:12.3f} {ahead:12.0f} {latency:10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
