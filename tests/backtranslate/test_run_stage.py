"""Back-translation as a stage of `lima run` (``data.backtranslate``): the run's data is the seed,
training reads the grown set, and a rerun skips the finished stage."""

from __future__ import annotations

import yaml

from limakit.records.example import load_examples
from limakit.run import execute, load_run_config
from limakit.run.stages import stages
from tests.backtranslate.helpers import scripted_judge, tiny_config, write_texts
from tests.evaluation.fake_server import FakeServer
from tests.runkit import statuses
from tests.runkit import tiny_config as tiny_run_config


def test_a_run_grows_its_data_by_back_translation_and_trains_on_it(tmp_path, tiny_model_dir):
    texts = write_texts(tmp_path / "texts.jsonl")
    with FakeServer(scripted_judge) as srv:
        judge = {"backend": "openai", "model": "scripted", "base_url": srv.url, "max_retries": 0}
        path = tiny_run_config(tmp_path / "setting", tiny_model_dir, srv.url)
        bt = tiny_config(tmp_path, tiny_model_dir, [str(texts)], rounds=1)
        for key in ("seed", "out", "train"):  # set by the run: its data, its folder, its training
            bt.pop(key)
        bt["rate"] = {"rater": "judge", "judge": judge, "threshold": 4}
        raw = yaml.safe_load(path.read_text())
        raw["data"]["backtranslate"] = bt
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        cfg = load_run_config(path, [])
        names = [s.name for s in stages(cfg)]
        assert names[:3] == ["data", "backtranslate", "train"]
        train = next(s for s in stages(cfg) if s.name == "train")
        assert train.reads == ["backtranslate/examples.jsonl"]
        out = tmp_path / "run"
        first = execute(cfg, out, only=["data", "backtranslate"])
        again = execute(cfg, out, only=["data", "backtranslate"])
    assert statuses(first) == {"data": "ran", "backtranslate": "ran"}
    assert statuses(again) == {"data": "skipped", "backtranslate": "skipped"}
    seed = load_examples(out / "data" / "examples.jsonl")
    grown = load_examples(out / "backtranslate" / "examples.jsonl")
    kept = [ex for ex in grown if "backtranslation" in ex.meta]
    assert [ex.id for ex in grown[: len(seed)]] == [ex.id for ex in seed]
    assert sorted(ex.meta["backtranslation"]["text_id"] for ex in kept) == [
        "t-five-a",
        "t-five-b",
        "t-four",
    ]
    # The backward model was trained with the run's own training section (its model).
    saved = yaml.safe_load((out / "backtranslate" / "config.yaml").read_text())
    assert saved["train"]["model"] == tiny_model_dir and saved["train"]["epochs"] == 2
