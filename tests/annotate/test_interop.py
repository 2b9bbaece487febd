"""Label Studio and Argilla files: what we write matches their documented formats, and their
exports (written here as the tools document them) come back as verdicts in the judge's format."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.core.files import read_jsonl_records
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


def test_labelstudio_config_keeps_indentation_and_line_breaks(tmp_path):
    """Label Studio draws a <Text> with `white-space: normal`: a <Style> must keep code as typed."""
    from limakit.annotate.interop import labelstudio_config

    config = ET.fromstring(labelstudio_config())
    (style,) = config.iter("Style")
    rule = re.fullmatch(r"\s*\.([\w-]+) \* \{\s*white-space:\s*pre-wrap( !important)?;\s*\}\s*",
                        style.text)  # fmt: skip
    assert rule, style.text
    kept = [t.get("name") for v in config.iter("View") if v.get("className") == rule.group(1)
            for t in v.iter("Text")]  # fmt: skip
    assert sorted(kept) == ["answer_a", "answer_b", "prompt"]  # every text sits in the class


def _answered(tmp_path, files) -> tuple[list[dict], dict]:
    """The tasks as written for Label Studio, and which choice says model A is better on each."""
    a, b = files
    main(["annotate", "export-labelstudio", "--a", str(a), "--b", str(b), "--out", str(tmp_path)])
    _, pairs = mapping(tmp_path / "mapping.jsonl")
    tasks = json.loads((tmp_path / "labelstudio-tasks.json").read_text())
    prefer_a = {
        t["data"]["pair_id"]: "A is better"
        if left_is_better(pairs[t["data"]["pair_id"]], "a")
        else "B is better"
        for t in tasks
    }
    return tasks, prefer_a


def _import(tmp_path, rows, name="export.json") -> tuple[list[dict], dict]:
    (tmp_path / name).write_text(json.dumps(rows))
    out = tmp_path / "people"
    assert main(["annotate", "import-labelstudio", str(tmp_path / name),
                 "--mapping", str(tmp_path / "mapping.jsonl"), "--out", str(out)]) == 0  # fmt: skip
    verdicts = [r for _n, r in read_jsonl_records(out / "verdicts.jsonl")]
    return verdicts, json.loads((out / "summary.json").read_text())


def test_labelstudio_json_min_export_comes_back_as_verdicts(files, tmp_path, capsys):
    """JSON-MIN (label-studio-converter's convert_to_json_min): one flat row per annotation, the
    task's data fields at the top level, a single choice and a single text as plain strings,
    ``annotator`` the user's id (or email); cancelled annotations are left out by Label Studio,
    and a task nobody annotated is one row with no answer."""
    tasks, prefer_a = _answered(tmp_path, files)
    rows = []
    for n, t in enumerate(tasks, start=1):
        stamp = {"created_at": "2026-01-02T10:00:00Z", "updated_at": "2026-01-02T10:00:00Z",
                 "lead_time": 4.1}  # fmt: skip
        if n == 3:
            rows.append({**t["data"], "id": n, "annotator": None, "annotation_id": None,
                         "created_at": None, "updated_at": None, "lead_time": None})  # fmt: skip
            continue
        rows.append(
            {
                **t["data"],
                "id": n,
                "preference": prefer_a[t["data"]["pair_id"]],
                "comment": f"note {n}",
                "annotator": 7,
                "annotation_id": 100 + n,
                **stamp,
            }
        )
        rows.append({**t["data"], "id": n, "preference": "Neither is significantly better",
                     "annotator": "lee@example.org", "annotation_id": 200 + n, **stamp})  # fmt: skip
    verdicts, summary = _import(tmp_path, rows, "export-min.json")
    by = {(r["annotator"], r["id"]): r for r in verdicts}
    assert sorted(by) == [("labelstudio-7", "p0"), ("labelstudio-7", "p1"),
                          ("lee@example.org", "p0"), ("lee@example.org", "p1")]  # fmt: skip
    assert by[("labelstudio-7", "p1")]["result"] == "win"
    assert by[("labelstudio-7", "p1")]["comment"] == "note 2"
    assert by[("lee@example.org", "p0")]["result"] == "tie"
    assert summary["unannotated"] == 1 and summary["agreement"]["comparisons"] == 2
    assert "JSON-MIN" in capsys.readouterr().err  # cancelled answers cannot be counted


def test_labelstudio_export_of_another_shape_names_the_export_to_use(files, tmp_path):
    from limakit.annotate.interop import import_labelstudio

    _answered(tmp_path, files)
    (tmp_path / "csvish.json").write_text(json.dumps([{"prompt": "x", "preference": "A"}]))
    with pytest.raises(LimaError, match=r"csvish.json: task 1: .*JSON-MIN.*export the project as"):
        import_labelstudio(tmp_path / "csvish.json", tmp_path / "mapping.jsonl", tmp_path / "o")


def test_labelstudio_annotators_are_named_by_email_when_the_export_has_it(files, tmp_path):
    """``completed_by`` is a user id, or the user (with ``email``) when the export expands it;
    ``created_username`` reads "first last email, id". The id form is the fallback."""
    tasks, prefer_a = _answered(tmp_path, files)
    people = [
        {"completed_by": 3, "created_username": " ana@example.org, 3"},
        {"completed_by": 4, "created_username": "Bo Li bo.li@example.org, 4"},
        {
            "completed_by": {
                "id": 5,
                "first_name": "",
                "last_name": "",
                "avatar": None,
                "email": "cy@example.org",
                "initials": "cy",
            }
        },  # fmt: skip
        {"completed_by": {"id": 6}},
        {"completed_by": 8, "created_username": ""},
    ]
    exported = []
    for n, t in enumerate(tasks, start=1):
        choice = prefer_a[t["data"]["pair_id"]]
        annotations = [
            {"id": 10 * n + i, "was_cancelled": False, "created_at": "2026-01-02T10:00:00Z",
             "result": [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                         "value": {"choices": [choice]}}], **who}
            for i, who in enumerate(people)
        ]  # fmt: skip
        exported.append({"id": n, "data": t["data"], "annotations": annotations})
    verdicts, summary = _import(tmp_path, exported)
    assert sorted(summary["annotators"]) == [
        "ana@example.org", "bo.li@example.org", "cy@example.org", "labelstudio-6",
        "labelstudio-8"]  # fmt: skip
    assert all(r["result"] == "win" for r in verdicts)


def test_one_annotation_per_task_warns_that_agreement_needs_more(files, tmp_path, capsys):
    tasks, prefer_a = _answered(tmp_path, files)
    exported = [
        {"id": n, "data": t["data"], "annotations": [
            {"id": n, "completed_by": 1 + n % 2, "was_cancelled": False,
             "result": [{"from_name": "preference", "to_name": "prompt", "type": "choices",
                         "value": {"choices": [prefer_a[t["data"]["pair_id"]]]}}]}]}
        for n, t in enumerate(tasks, start=1)
    ]  # fmt: skip
    _verdicts, summary = _import(tmp_path, exported)
    assert summary["agreement"]["comparisons"] == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "agreement between annotators cannot be computed" in err
    assert "one annotation per task" in err and "maximum_annotations" in err
    # two people on a pair: agreement is computed and nothing is said
    exported[0]["annotations"].append({**exported[0]["annotations"][0], "id": 99,
                                       "completed_by": 9})  # fmt: skip
    _verdicts, summary = _import(tmp_path, exported)
    assert summary["agreement"]["comparisons"] == 1
    assert "cannot be computed" not in capsys.readouterr().err
