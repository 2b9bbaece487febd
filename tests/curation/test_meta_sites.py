"""A full Stack Exchange dump holds a meta site beside every site: curation skips them by default
(counted under the rule ``meta_site``), reads them on request, and the card says which it read."""

from __future__ import annotations

import html
import json
from pathlib import Path

from limakit.cli import main
from limakit.curation import CurateConfig, curate
from limakit.records.example import load_examples


def _site(root: Path, host: str, questions: int) -> None:
    """A site folder whose ``questions`` questions all have a good, distinct answer."""
    d = root / host
    d.mkdir(parents=True)
    rows = []
    for q in range(questions):
        qid, aid = 2 * q + 1, 2 * q + 2
        rows.append(
            f'<row Id="{qid}" PostTypeId="1" Score="{100 - q}" Title="{host} question {q}?" '
            f'Body="&lt;p&gt;Body of {host} question {q}&lt;/p&gt;" />'
        )
        text = " ".join(f"{host.replace('.', '')}{q}w{j}" for j in range(40))
        body = html.escape(f"<p>{text}</p>", quote=True)
        rows.append(f'<row Id="{aid}" PostTypeId="2" ParentId="{qid}" Score="50" Body="{body}" />')
    (d / "Posts.xml").write_text("<posts>\n" + "\n".join(rows) + "\n</posts>\n")


def _dump(tmp_path: Path) -> Path:
    dump = tmp_path / "dump"
    _site(dump, "cooking.stackexchange.com", 6)
    _site(dump, "cooking.meta.stackexchange.com", 6)
    _site(dump, "meta.stackexchange.com", 6)  # the network-wide meta
    _site(dump, "meta.stackoverflow.com", 6)
    return dump


def _config(dump: Path, out: Path, **kw) -> CurateConfig:
    return CurateConfig(
        stackexchange=[str(dump)],
        n=20,
        out=str(out),
        progress=False,
        dedup={"near": False},
        rules={"min_answer_chars": 100},
        **kw,
    )


def test_meta_sites_are_skipped_and_counted_under_their_own_rule(tmp_path):
    out = tmp_path / "out"
    summary = curate(_config(_dump(tmp_path), out))
    examples = load_examples(out / "examples.jsonl")
    assert {e.meta["site"] for e in examples} == {"cooking"}
    assert summary.examples == 6
    assert summary.read == {"stackexchange_other": 6}  # meta questions were never read
    assert summary.rejected_by_source_rule["stackexchange/meta_site"] == 3
    rows = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    meta_rows = [r for r in rows if r["rule"] == "meta_site"]
    assert sorted(r["meta"]["site"] for r in meta_rows) == [
        "cooking.meta",
        "meta",
        "stackoverflow.meta",
    ]
    assert all("include_meta" in r["reason"] for r in meta_rows)
    card = (out / "card.md").read_text()
    assert "Exchanges read: 1" in card
    assert "Meta sites skipped: 3 (cooking.meta, meta, stackoverflow.meta)" in card
    assert "| stackexchange | meta_site | 3 |" in card
    assert "| cooking | 6 |" in card and "| cooking.meta |" not in card


def test_include_meta_reads_them_as_exchanges_with_distinct_names(tmp_path):
    dump, out = _dump(tmp_path), tmp_path / "out"
    args = ["curate", "--stackexchange", str(dump), "--include-meta", "--n", "24"]
    args += ["--out", str(out), "--no-progress", "--set", "rules.min_answer_chars=100"]
    assert main([*args, "--set", "dedup.near=false"]) == 0
    sites = {e.meta["site"] for e in load_examples(out / "examples.jsonl")}
    # meta.stackexchange.com and meta.stackoverflow.com no longer share the name "meta"
    assert sites == {"cooking", "cooking.meta", "meta", "stackoverflow.meta"}
    card = (out / "card.md").read_text()
    assert "Exchanges read: 4" in card and "Meta sites read" in card
    assert "meta_site" not in card
    for site in sorted(sites):
        assert f"| {site} | 6 | 6 |" in card


def test_include_meta_is_a_config_field(tmp_path):
    cfg = _config(tmp_path, tmp_path / "out")
    assert cfg.se.include_meta is False
    assert _config(tmp_path, tmp_path / "o", se={"include_meta": True}).se.include_meta
