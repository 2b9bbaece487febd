"""Files for teams that annotate in Label Studio or Argilla, and their exports read back.

``export_*`` pairs two answer files as ``lima judge pairwise`` does, swaps the sides of each pair
from a seed, and writes what the tool imports (answers shown as ``answer_a``/``answer_b`` under an
opaque ``pair_id``) plus ``mapping.jsonl``, which only limakit reads: which model each side is.
``import_*`` turns the tool's export back into verdicts in the LLM judge's format.

Label Studio: ``labelstudio-config.xml`` (plain ``<Text>`` fields, never ``<HyperText>``, so model
output cannot load anything, each kept in a ``<View>`` whose ``<Style>`` keeps line breaks and
indentation; a ``<Choices>`` question with the three options on keys 1/2/3) and
``labelstudio-tasks.json`` (``[{"data": {...}}]``). Two of its exports are read back: JSON, a list
of tasks, each with ``annotations[].result[]`` holding ``{"from_name": "preference", "value":
{"choices": [...]}}`` and ``completed_by`` (a user id, or the user with its ``email``); and
JSON-MIN, one flat row per annotation: the task's data fields, ``preference`` and ``comment`` as
plain values, ``annotator`` (a user id or email), ``annotation_id``, ``created_at``.
Argilla (2.x): ``argilla-settings.json`` (``Settings.from_json``) and ``argilla-records.json``
(``Record.to_dict`` layout: ``fields``, ``metadata``); its ``records.to_json`` export carries
``responses: {"preference": [{"value": ..., "user_id": ...}]}``.
"""

from __future__ import annotations

import hashlib
import os
import re
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

from limakit.annotate import db
from limakit.annotate.export import BUTTONS, summarise, verdict_row
from limakit.core.console import note, warn
from limakit.core.errors import LimaError
from limakit.core.files import atomic_write, read_json, read_jsonl_records, write_json, write_jsonl
from limakit.evaluation.pairs import pair_answers

QUESTION = "preference"
COMMENT = "comment"
# Label Studio draws a <Text> with `white-space: normal`, which folds code's indentation and line
# breaks; this class, on a <View> around each text, keeps them (wrapping long lines).
TEXT_CLASS = "lima-text"
TEXT_STYLE = f".{TEXT_CLASS} * {{ white-space: pre-wrap !important; }}"
# What each tool's answer value may be -> the label as shown (A: left better, C: neither).
VALUE_TO_LABEL = {text: label for label, text in BUTTONS.items()} | {k: k for k in BUTTONS}


def _swapped(seed: int, pair_id: str) -> bool:
    return bool(hashlib.sha256(f"{seed}\0{pair_id}".encode()).digest()[0] & 1)


def _prepare(a_path, b_path, out: str | os.PathLike, seed: int) -> tuple[Path, list[dict]]:
    """Pairs with their shown sides; writes mapping.jsonl. Returns (folder, tasks' data)."""
    out = Path(out)
    ps = pair_answers(a_path, b_path)
    data, mapping = [], []
    for i, p in enumerate(ps.pairs):
        pair_id = f"pair-{i:05d}"
        swap = _swapped(seed, pair_id)
        left, right = (p.answer_b, p.answer_a) if swap else (p.answer_a, p.answer_b)
        data.append({"pair_id": pair_id, "prompt": p.prompt, "answer_a": left, "answer_b": right})
        mapping.append({
            "pair_id": pair_id, "id": p.id, "sample": p.sample, "category": p.category,
            "swapped": swap, "len_a": len(p.answer_a), "len_b": len(p.answer_b),
        })  # fmt: skip
    header = {
        "mapping_of": "limakit annotate", "a": {"path": ps.a_path, "model": ps.a_model},
        "b": {"path": ps.b_path, "model": ps.b_model}, "pairs": len(ps.pairs),
        "only_a": len(ps.only_a), "only_b": len(ps.only_b), "seed": seed,
    }  # fmt: skip
    write_jsonl(out / "mapping.jsonl", [header, *mapping])
    return out, data


def labelstudio_config() -> str:
    """The Label Studio labeling config: plain text fields and a three-way choice on keys 1-3."""
    view = ET.Element("View")
    ET.SubElement(view, "Style").text = TEXT_STYLE
    for title, name in (("Prompt", "prompt"), ("Answer A", "answer_a"), ("Answer B", "answer_b")):
        ET.SubElement(view, "Header", value=title)
        box = ET.SubElement(view, "View", className=TEXT_CLASS)
        ET.SubElement(box, "Text", name=name, value=f"${name}")
    choices = ET.SubElement(
        view, "Choices", name=QUESTION, toName="prompt", choice="single-radio", required="true"
    )
    for key, (_label, text) in enumerate(BUTTONS.items(), start=1):
        ET.SubElement(choices, "Choice", value=text, hotkey=str(key))
    ET.SubElement(
        view, "TextArea", name=COMMENT, toName="prompt", placeholder="Comment (optional)",
        maxSubmissions="1",
    )  # fmt: skip
    ET.indent(view)
    return ET.tostring(view, encoding="unicode") + "\n"


def export_labelstudio(a_path, b_path, out, *, seed: int = 0) -> list[Path]:
    out, data = _prepare(a_path, b_path, out, seed)
    with atomic_write(out / "labelstudio-config.xml") as f:
        f.write(labelstudio_config())
    write_json(out / "labelstudio-tasks.json", [{"data": d} for d in data])
    return [out / "labelstudio-config.xml", out / "labelstudio-tasks.json", out / "mapping.jsonl"]


def argilla_settings() -> dict:
    """Argilla 2.x dataset settings (the layout of ``rg.Settings.to_json``)."""

    def field(name: str, title: str) -> dict:
        return {"name": name, "title": title, "required": True,
                "settings": {"type": "text", "use_markdown": False}}  # fmt: skip

    options = [
        {"value": label, "text": text, "description": None} for label, text in BUTTONS.items()
    ]
    return {
        "guidelines": "Which answer to the prompt is better? Answers are shown in a random order.",
        "fields": [
            field("prompt", "Prompt"),
            field("answer_a", "Answer A"),
            field("answer_b", "Answer B"),
        ],  # fmt: skip
        "questions": [
            {
                "name": QUESTION,
                "title": "Which answer is better?",
                "description": None,
                "required": True,
                "settings": {
                    "type": "label_selection",
                    "options": options,
                    "visible_options": None,
                },
            },
            {
                "name": COMMENT,
                "title": "Comment (optional)",
                "description": None,
                "required": False,
                "settings": {"type": "text", "use_markdown": False},
            },
        ],  # fmt: skip
        "metadata": [],
        "vectors": [],
        "allow_extra_metadata": True,
    }


def export_argilla(a_path, b_path, out, *, seed: int = 0) -> list[Path]:
    out, data = _prepare(a_path, b_path, out, seed)
    records = [
        {"id": d["pair_id"], "fields": {k: d[k] for k in ("prompt", "answer_a", "answer_b")},
         "metadata": {"pair_id": d["pair_id"]}, "suggestions": {}, "responses": {}, "vectors": {}}
        for d in data
    ]  # fmt: skip
    write_json(out / "argilla-settings.json", argilla_settings())
    write_json(out / "argilla-records.json", records)
    return [out / "argilla-settings.json", out / "argilla-records.json", out / "mapping.jsonl"]


# --- reading exports back -----------------------------------------------------------------------


def _read_mapping(path) -> tuple[dict, dict[str, dict]]:
    rows = list(read_jsonl_records(path))
    if not rows or rows[0][1].get("mapping_of") != "limakit annotate":
        raise LimaError(f"{path}: not a mapping.jsonl written by `lima annotate export-*`")
    return rows[0][1], {r["pair_id"]: r for _n, r in rows[1:]}


def _load_json_list(path) -> list:
    path = Path(path)
    data = read_json(path, "export file")
    if not isinstance(data, list):
        raise LimaError(f"{path}: expected a JSON list of tasks/records, got {type(data).__name__}")
    return data


# Why an import may hold one answer per pair, and what to change in the tool before annotating.
ONE_PER_PAIR = {
    "labelstudio": (
        "Label Studio collects one annotation per task unless the project asks for more: "
        "raise its maximum_annotations ('Annotations per task', the overlap) to 2 or more"
    ),
    "argilla": (
        "Argilla completes a record after one response unless the dataset asks for more: "
        "raise its task distribution's min_submitted to 2 or more"
    ),
}


class _Collect:
    """Verdict rows from a tool's export, with every skipped answer counted by reason."""

    def __init__(self, export_path, mapping_path, tool: str):
        self.export_path = export_path
        self.tool = tool
        self.header, self.mapping = _read_mapping(mapping_path)
        self.rows: list[dict] = []
        self.skipped: dict[str, int] = {}

    def pair(self, pair_id, where: str) -> dict:
        if pair_id not in self.mapping:
            raise LimaError(
                f"{self.export_path}: {where}: pair_id {pair_id!r} is not in the mapping file"
            )
        return self.mapping[pair_id]

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def add(self, m: dict, value, annotator: str, comment: str, created: str, where: str) -> None:
        if value not in VALUE_TO_LABEL:
            raise LimaError(
                f"{self.export_path}: {where}: answer {value!r} is none of "
                f"{', '.join(map(repr, BUTTONS.values()))}"
            )
        self.rows.append(verdict_row({
            "prompt_id": m["id"], "sample": m["sample"], "category": m["category"],
            "swapped": m["swapped"], "label": VALUE_TO_LABEL[value], "annotator": annotator,
            "comment": comment, "created": created,
            "len_a": m["len_a"], "len_b": m["len_b"],
        }))  # fmt: skip

    def write(self, out) -> tuple[Path, dict]:
        out = Path(out)
        verdicts_path = out if out.suffix == ".jsonl" else out / "verdicts.jsonl"
        h = self.header
        s = db.SetInfo(
            0, Path(self.export_path).name, h["a"]["model"], h["b"]["model"], h["a"]["path"],
            h["b"]["path"], h["pairs"], h["only_a"], h["only_b"],
        )  # fmt: skip
        self.rows.sort(key=lambda r: (r["id"], r["sample"], r["annotator"]))
        summary = summarise(self.rows, s)
        self._warn_one_per_pair()
        summary["judge"]["backend"] = "human"
        summary["imported_from"] = str(self.export_path)
        summary["skipped"] = dict(sorted(self.skipped.items()))
        write_jsonl(verdicts_path, self.rows)
        write_json(verdicts_path.parent / "summary.json", summary)
        return verdicts_path, summary

    def _warn_one_per_pair(self) -> None:
        """Agreement needs two people on a pair: say so when no pair has a second answer."""
        people = {(r["id"], r["sample"], r["annotator"]) for r in self.rows}
        per_pair = Counter((pair_id, sample) for pair_id, sample, _who in people)
        if not per_pair or max(per_pair.values()) > 1:
            return
        warn(
            f"{self.export_path}: each of its {len(per_pair)} answered pairs has one "
            "person's answer, so agreement between annotators cannot be computed; "
            f"{ONE_PER_PAIR[self.tool]} before annotating"
        )


# Label Studio writes an annotation's ``created_username`` as "[first [last] ]email, id".
_CREATED_BY = re.compile(r"(\S+@\S+),\s*\d+\s*$")


def _by_id(user_id) -> str:
    return f"labelstudio-{user_id}" if user_id not in (None, "") else "unknown"


def _person(ann: dict) -> str:
    """Who made a JSON export's annotation: the user's email when the export carries it (an
    expanded ``completed_by`` or ``created_username``), else ``labelstudio-<user id>``."""
    by = ann.get("completed_by")
    if isinstance(by, dict):
        if by.get("email"):
            return str(by["email"])
        by = by.get("id")
    found = _CREATED_BY.search(str(ann.get("created_username") or ""))
    return found.group(1) if found else _by_id(by)


def _annotator(value) -> str:
    """JSON-MIN's ``annotator``: the user's email, or its id when the export had no email."""
    if isinstance(value, str) and value.strip() and not value.strip().isdigit():
        return value.strip()
    return _by_id(value.strip() if isinstance(value, str) else value)


def _plain_text(value) -> str:
    """A TextArea answer as JSON-MIN writes it: the text, or a list of ``{"text": [...]}``."""
    if isinstance(value, str):
        return value
    parts = []
    for item in value if isinstance(value, list) else [value]:
        texts = item.get("text", []) if isinstance(item, dict) else [item]
        parts.extend(str(t) for t in (texts if isinstance(texts, list) else [texts]))
    return " ".join(parts)


def _json_task(c: _Collect, task: dict, where: str) -> None:
    """One task of Label Studio's JSON export, with all its annotations."""
    m = c.pair(task["data"].get("pair_id"), where)
    for a, ann in enumerate(task.get("annotations") or []):
        if ann.get("was_cancelled"):
            c.skip("cancelled (skipped in Label Studio)")
            continue
        results = ann.get("result") or []
        picked = [r for r in results if r.get("from_name") == QUESTION]
        notes = [r for r in results if r.get("from_name") == COMMENT]
        choices = picked[0].get("value", {}).get("choices", []) if picked else []
        if len(choices) != 1:
            c.skip("no single choice")
            continue
        comment = " ".join(notes[0].get("value", {}).get("text", [])) if notes else ""
        c.add(m, choices[0], _person(ann), comment, str(ann.get("created_at", "")),
              f"{where}, annotation {a + 1}")  # fmt: skip


def _json_min_row(c: _Collect, row: dict, where: str) -> None:
    """One row of Label Studio's JSON-MIN export: one annotation, its fields at the top level."""
    m = c.pair(row.get("pair_id"), where)
    value = row.get(QUESTION)
    if value is None and row.get("annotation_id") is None:
        return  # a task nobody annotated: counted under "unannotated"
    if not isinstance(value, str):  # several choices come as a list of objects
        c.skip("no single choice")
        return
    c.add(m, value, _annotator(row.get("annotator")), _plain_text(row.get(COMMENT) or ""),
          str(row.get("created_at") or ""), where)  # fmt: skip


def import_labelstudio(export_path, mapping_path, out) -> tuple[Path, dict]:
    """Label Studio's JSON (or JSON-MIN) export -> verdicts.jsonl + summary.json."""
    c = _Collect(export_path, mapping_path, tool="labelstudio")
    flat = 0
    for t, task in enumerate(_load_json_list(export_path)):
        where = f"task {t + 1}"
        if isinstance(task, dict) and isinstance(task.get("data"), dict):
            _json_task(c, task, where)
        elif isinstance(task, dict) and "pair_id" in task:
            flat += 1
            _json_min_row(c, task, f"row {t + 1}")
        else:
            raise LimaError(
                f"{export_path}: {where}: neither a task of Label Studio's JSON export (with a "
                "'data' object) nor a row of its JSON-MIN export (with 'pair_id'); export the "
                "project as JSON"
            )
    if flat:
        note(
            f"note: {export_path} is a JSON-MIN export, which leaves out cancelled (skipped) "
            "annotations, so they are not counted; export as JSON to count them"
        )
    return c.write(out)


def import_argilla(export_path, mapping_path, out) -> tuple[Path, dict]:
    """Argilla's ``records.to_json`` export -> verdicts.jsonl + summary.json."""
    c = _Collect(export_path, mapping_path, tool="argilla")
    for r, record in enumerate(_load_json_list(export_path)):
        where = f"record {r + 1}"
        if not isinstance(record, dict):
            raise LimaError(f"{export_path}: {where}: a record must be an object")
        pair_id = (record.get("metadata") or {}).get("pair_id") or record.get("id")
        m = c.pair(pair_id, where)
        responses = record.get("responses") or {}
        comments = {x.get("user_id"): x.get("value") for x in responses.get(COMMENT, [])}
        for x in responses.get(QUESTION, []):
            if x.get("status", "submitted") != "submitted":
                c.skip(f"status {x.get('status')}")
                continue
            user = str(x.get("user_id") or "unknown")
            c.add(m, x.get("value"), user, str(comments.get(x.get("user_id")) or ""), "", where)
    return c.write(out)
