"""Small inputs for the back-translation tests: seed pairs, texts, a Stack Exchange site, a judge."""

from __future__ import annotations

import html
import re
from pathlib import Path

from limakit.core.files import write_jsonl

SEED = [
    (
        "How do I keep bread from going stale?",
        "Wrap the loaf in a cloth bag and keep it at room "
        "temperature; the refrigerator dries bread out faster. Freeze slices you will not eat within "
        "two days and toast them straight from the freezer.",
    ),
    (
        "Why does ice float on water?",
        "Water expands as it freezes: the molecules lock into an open "
        "hexagonal lattice held by hydrogen bonds, so ice is about nine percent less dense than the "
        "liquid around it and floats.",
    ),
    (
        "What is a good first houseplant?",
        "A pothos is hard to kill. It tolerates low light, tells "
        "you when it is thirsty by drooping, and recovers within hours of watering. Cuttings root in a "
        "glass of water.",
    ),
    (
        "How should a beginner start running?",
        "Alternate one minute of easy running with two "
        "minutes of walking for twenty minutes, three times a week, and add running time each week. "
        "Run slowly enough to hold a conversation.",
    ),
]

# Texts: the marker word decides what the scripted judge answers (see ``scripted_judge``).
TEXTS = {
    "t-five-a": "SCORE5 Tomatoes ripen best on the counter, stem side down, away from direct sun. "
    "Cold below ten degrees stops the enzymes that make their flavour.",
    "t-five-b": "SCORE5 A sourdough starter needs flour and water in equal weights, fed daily. "
    "Bubbles and a pleasant sour smell after a week show that it is alive.",
    "t-four": "SCORE4 Copper pans heat evenly because copper conducts heat very well, but they "
    "react with acidic food unless lined with tin or steel.",
    "t-three": "SCORE3 Parks are nice in the spring when the weather warms and the trees come "
    "into leaf, and many people walk there after work.",
    "t-bad": "GARBLED A reply with two scores is refused by the strict parser, so this pair is "
    "counted as unparsable and never kept in any round.",
}


def scripted_judge(body: dict, n: int):
    """A judge that scores a pair by the marker in its response text."""
    from tests.evaluation.fake_server import Act

    user = body["messages"][-1]["content"]
    m = re.search(r"\[Response\]\n(.*?)\n\[End of Response\]", user, re.S)
    text = m.group(1) if m else ""
    if "GARBLED" in text:
        return Act("Somewhere between [[4]] and [[5]].")
    for s in ("5", "4", "3"):
        if f"SCORE{s}" in text:
            return Act(f"The response fits the instruction.\n[[{s}]]")
    return Act("[[1]]")


def write_seed(path: Path) -> Path:
    write_jsonl(
        path,
        [
            {
                "id": f"seed-{i}",
                "source": "manual",
                "messages": [
                    {"role": "user", "content": q},
                    {"role": "assistant", "content": a},
                ],
                "meta": {},
            }
            for i, (q, a) in enumerate(SEED)
        ],
    )
    return path


def write_texts(path: Path, texts: dict[str, str] | None = None) -> Path:
    write_jsonl(path, [{"id": k, "text": v} for k, v in (texts or TEXTS).items()])
    return path


def write_site(folder: Path, pairs: list[tuple[str, str, int]]) -> Path:
    """A Stack Exchange site folder: (title, answer, answer score) per question."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (title, answer, score) in enumerate(pairs):
        q, a = 2 * i + 1, 2 * i + 2
        body = html.escape(f"<p>{title} Some details about it.</p>", quote=True)
        rows.append(
            f'  <row Id="{q}" PostTypeId="1" AcceptedAnswerId="{a}" Score="5" '
            f'Body="{body}" Title="{html.escape(title, quote=True)}" Tags="" />'
        )
        rows.append(
            f'  <row Id="{a}" PostTypeId="2" ParentId="{q}" Score="{score}" '
            f'Body="{html.escape(f"<p>{answer}</p>", quote=True)}" />'
        )
    (folder / "Posts.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n",
        encoding="utf-8",
    )
    return folder


def tiny_config(tmp: Path, model: str, texts: list[str], **extra) -> dict:
    """A config mapping for tiny random models: one quick epoch, short greedy instructions."""
    cfg = {
        "seed": str(write_seed(tmp / "seed.jsonl")),
        "texts": texts,
        "out": str(tmp / "out"),
        "rounds": 2,
        "progress": False,
        "embedder": str(tmp / "no-embedder"),  # the card notes the missing figure; fast
        "train": {
            "model": model,
            "epochs": 1,
            "lr": 1e-3,
            "final_lr": 1e-4,
            "global_batch": 4,
            "micro_batch": 4,
            "max_len": 256,
            "dropout_top": 0.0,
            "compile": False,
            "threads": 1,
        },
        "hygiene": {"limits": {"min_answer_chars": 40, "max_answer_chars": 4000}},
        "augment": {
            "decode": {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6},
            "device": "cpu",
            "dtype": "float32",
            "drop_cut_off": False,
        },
        "rate": {"device": "cpu"},
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg
