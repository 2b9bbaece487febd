"""Label Studio and Argilla files: what we write matches their documented formats, and their
exports (written here as the tools document them) come back as verdicts in the judge's format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from limakit.cli import main
from limakit.errors import LimaError
from limakit.files import read_jsonl_records
from tests.annotate.helpers import XSS, write_answers

A = ["GOOD first", "GOOD second", XSS]
B = ["weak first", "weak second", "weak third"]


@pytest.fixture
def files(tmp_path):
    return write_answers(tmp_path, A, B)


def mapping(path):
    rows = [r for _n, r in read_jsonl_records(path)]
    return rows[0], {r["pair_id"]: r for r in rows[1:]}


def left_is_better(m: dict, model: str) -> bool:
    """Whether the left answer ('A' in the tool) is the given model's."""
    return (model == "a") != m["swapped"]


def test_labelstudio_config_and_tasks(files, tmp_path):
    a, b = files
    assert main(["annotate", "export-labelstudio", "--a", str(a), "--b", str(b),
                 "--out", str(tmp_path / "ls")]) == 0  # fmt: skip
    config = ET.fromstring((tmp_path / "ls" / "labelstudio-config.xml").read_text())
    assert config.tag == "View" and not config.findall(".//HyperText")
    texts = {t.get("name"): t.get("value") for t in config.iter("Text")}
    assert texts == {"prompt": "$prompt", "answer_a": "$answer_a", "answer_b": "$answer_b"}
    (choices,) = config.iter("Choices")
    assert choices.get("toName") == "prompt" and choices.get("choice") == "single-radio"
    assert [(c.get("value"), c.get("hotkey")) for c in choices] == [
        ("A is better", "1"),
        ("B is better", "2"),
        ("Neither is significantly better", "3"),
    ]
    tasks = json.loads((tmp_path / "ls" / "labelstudio-tasks.json").read_text())
    assert [set(t["data"]) for t in tasks] == [{"pair_id", "prompt", "answer_a", "answer_b"}] * 3
    text = json.dumps(tasks)
    assert "model-a" not in text and "model-b" not in text  # blinded: the mapping stays with us
    header, pairs = mapping(tmp_path / "ls" / "mapping.jsonl")
    assert header["a"]["model"] == "model-a" and header["pairs"] == 3
    assert sorted(m["swapped"] for m in pairs.values()) == [False, True, True]  # seed 0
    for t in tasks:
        m = pairs[t["data"]["pair_id"]]
        good = t["data"]["answer_a" if left_is_better(m, "a") else "answer_b"]
        assert good == A[int(m["id"][1:])]


def test_labelstudio_export_comes_back_as_verdicts(files, tmp_path, capsys):
    a, b = files
    main(["annotate", "export-labelstudio", "--a", str(a), "--b", str(b), "--out", str(tmp_path)])
    _, pairs = mapping(tmp_path / "mapping.jsonl")
    tasks = json.loads((tmp_path / "labelstudio-tasks.json").read_text())
    exported = []
    for n, t in enumerate(tasks, start=1):
        m = pairs[t["data"]["pair_id"]]
        prefer_a = "A is better" if left_is_better(m, "a") else "B is better"
        annotations = [
            {"id": 100 + n, "completed_by": 7, "was_cancelled": False, "ground_truth": False,
             "created_at": "2026-01-02T10:00:00Z", "lead_time": 3.2, "task": n,
             "result": [
                 {"id": "r1", "from_name": "preference", "to_name": "prompt", "type": "choices",
                  "value": {"choices": [prefer_a]}},
                 {"id": "r2", "from_name": "comment", "to_name": "prompt", "type": "textarea",
                  "value": {"text": [f"note {n}"]}},
             ]},
            {"id": 200 + n, "completed_by": {"id": 9, "email": "lee@example.org"},
             "was_cancelled": n == 3, "created_at": "2026-01-02T11:00:00Z", "task": n,
             "result": [] if n == 3 else [
                 {"id": "r3", "from_name": "preference", "to_name": "prompt", "type": "choices",
                  "value": {"choices": ["Neither is significantly better"]}}]},
        ]  # fmt: skip
        exported.append({"id": n, "data": t["data"], "annotations": annotations,
                         "predictions": [], "project": 4})  # fmt: skip
    (tmp_path / "export.json").write_text(json.dumps(exported))
    out = tmp_path / "people"
    assert main(["annotate", "import-labelstudio", str(tmp_path / "export.json"),
                 "--mapping", str(tmp_path / "mapping.jsonl"), "--out", str(out)]) == 0  # fmt: skip
    rows = [r for _n, r in read_jsonl_records(out / "verdicts.jsonl")]
    assert len(rows) == 5  # 3 from user 7, 2 from lee (one cancelled)
    by = {(r["annotator"], r["id"]): r for r in rows}
    assert all(by[("labelstudio-7", f"p{i}")]["result"] == "win" for i in range(3))
    assert by[("labelstudio-7", "p1")]["comment"] == "note 2"
    assert by[("lee@example.org", "p0")]["result"] == "tie"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == {"cancelled (skipped in Label Studio)": 1}
    assert summary["judge"]["backend"] == "human" and summary["annotators"] == {
        "labelstudio-7": 3, "lee@example.org": 2}  # fmt: skip
    printed = capsys.readouterr().out  # two pairs, win vs tie on each: 0.5 + 0.5
    assert "agreement between annotators: 50.0% tie-discounted" in printed
    assert "skipped: cancelled (skipped in Label Studio) 1" in printed


def test_labelstudio_import_names_an_unknown_pair(files, tmp_path):
    a, b = files
    main(["annotate", "export-labelstudio", "--a", str(a), "--b", str(b), "--out", str(tmp_path)])
    (tmp_path / "bad.json").write_text(json.dumps([{"data": {"pair_id": "pair-99999"}}]))
    from limakit.annotate.interop import import_labelstudio

    with pytest.raises(LimaError, match=r"bad.json: task 1: pair_id 'pair-99999'"):
        import_labelstudio(tmp_path / "bad.json", tmp_path / "mapping.jsonl", tmp_path / "o")


def test_argilla_settings_records_and_export(files, tmp_path):
    a, b = files
    assert main(["annotate", "export-argilla", "--a", str(a), "--b", str(b),
                 "--out", str(tmp_path)]) == 0  # fmt: skip
    settings = json.loads((tmp_path / "argilla-settings.json").read_text())
    assert [f["name"] for f in settings["fields"]] == ["prompt", "answer_a", "answer_b"]
    assert all(f["settings"] == {"type": "text", "use_markdown": False} for f in settings["fields"])
    question = settings["questions"][0]
    assert question["name"] == "preference"
    assert question["settings"]["type"] == "label_selection"
    assert [o["value"] for o in question["settings"]["options"]] == ["A", "B", "C"]
    records = json.loads((tmp_path / "argilla-records.json").read_text())
    assert set(records[0]) >= {"id", "fields", "metadata", "responses", "suggestions", "vectors"}
    _, pairs = mapping(tmp_path / "mapping.jsonl")
    for rec in records:  # answered as Argilla's records.to_json writes them
        m = pairs[rec["metadata"]["pair_id"]]
        rec["responses"] = {
            "preference": [
                {"value": "B" if left_is_better(m, "a") else "A", "user_id": "u-1"},
                {"value": "C", "user_id": "u-2", "status": "draft"},
            ],
            "comment": [{"value": "model B is better", "user_id": "u-1"}],
        }
        rec["_server_id"] = "8f0c"
    (tmp_path / "argilla-export.json").write_text(json.dumps(records))
    out = tmp_path / "people" / "v.jsonl"
    assert main(["annotate", "import-argilla", str(tmp_path / "argilla-export.json"),
                 "--mapping", str(tmp_path / "mapping.jsonl"), "--out", str(out)]) == 0  # fmt: skip
    rows = [r for _n, r in read_jsonl_records(out)]
    assert [(r["annotator"], r["result"], r["comment"]) for r in rows] == [
        ("u-1", "lose", "model B is better")] * 3  # fmt: skip
    summary = json.loads((out.parent / "summary.json").read_text())
    assert summary["lose"] == 1.0 and summary["skipped"] == {"status draft": 3}
