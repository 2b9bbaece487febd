"""`lima ablate` on the tiny setting: every arm runs (equal arms once), plots and plain verdicts."""

from __future__ import annotations

import json

import pytest
import yaml

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.run.ablate import load_ablate_config, plan_arms
from limakit.run.ablation_report import overlap, verdict_lines
from tests.evaluation.fake_server import FakeServer
from tests.evaluation.summary_cases import answer_checks
from tests.runkit import judge_behaviour, read_json, tiny_config

ARMS = [
    "quantity-n2-seed0",
    "quantity-n4-seed0",
    "quality-filtered-seed0",
    "quality-unfiltered-seed0",
    "diversity-mixed-seed0",
    "diversity-homogeneous-seed0",
]


def write_ablate_config(root, run_config) -> str:
    cfg = {
        "run": str(run_config),
        "set": [
            "baselines=[]",
            "evaluate.pairwise=false",
            "select.enabled=false",
            "train.epochs=1",
        ],  # fmt: skip
        "seeds": [0],
        "quantity": {"k": [1, 2]},
        "quality": {"n": 4},
        "diversity": {"n": 4, "homogeneous": ["data.prompt_filter=python|sql|javascript"]},
    }
    path = root / "ablate.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def test_ablate_runs_every_arm_and_plots(tmp_path, tiny_model_dir):
    with FakeServer(judge_behaviour) as srv:
        run_config = tiny_config(tmp_path / "setting", tiny_model_dir, srv.url)
        path = write_ablate_config(tmp_path, run_config)
        assert [a.dir_name for a in plan_arms(load_ablate_config(path))] == ARMS
        out = tmp_path / "ablate"
        assert main(["ablate", path, "--out", str(out)]) == 0

    for arm in ARMS:
        assert (out / "arms" / arm / "report" / "report.md").exists(), arm
        assert (out / "arms" / arm / "judge" / "likert-model" / "verdicts.jsonl").exists(), arm
    # Every arm's own settings, and only its data differ: same training and seeds.
    configs = {a: yaml.safe_load((out / "arms" / a / "config.yaml").read_text()) for a in ARMS}
    assert len({json.dumps(c["train"], sort_keys=True) for c in configs.values()}) == 1
    assert {c["data"]["curate"]["n"] for c in configs.values()} == {2, 4}
    assert configs["quality-unfiltered-seed0"]["data"]["curate"]["select"] == "random"
    homogeneous = out / "arms" / "diversity-homogeneous-seed0" / "data" / "examples.jsonl"
    prompts = [
        json.loads(x)["messages"][0]["content"] for x in homogeneous.read_text().splitlines()
    ]
    assert len(prompts) == 4 and all(
        any(w in p for w in ("python", "sql", "javascript")) for p in prompts
    )
    # Equal arms share their stages: the filtered arm is the n=4 arm, linked from the cache.
    ckpt = "train/checkpoints/epoch-1/model.safetensors"
    same = [(out / "arms" / a / ckpt).stat().st_ino for a in
            ("quantity-n4-seed0", "quality-filtered-seed0", "diversity-mixed-seed0")]  # fmt: skip
    assert len(set(same)) == 1
    assert (out / "arms" / "quantity-n2-seed0" / ckpt).stat().st_ino != same[0]

    results = read_json(out / "ablations.json")
    assert [r["arm"] for r in results["quantity"]] == ["n=2", "n=4"]
    assert [r["examples"] for r in results["quantity"]] == [2, 4]
    assert "| n=2 | 2 | 3 |" in (out / "report.md").read_text()  # arm, examples, prompts
    assert [r["arm"] for r in results["quality"]] == ["filtered", "unfiltered"]
    assert [r["arm"] for r in results["diversity"]] == ["mixed", "homogeneous"]
    report = (out / "report.md").read_text()
    for ablation, rows in results.items():
        assert (out / f"{ablation}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({ablation}.png)" in report
        for r in rows:
            assert r["prompts"] == 3 and 1 <= r["mean_ci"][0] <= r["mean"] <= r["mean_ci"][1] <= 6
        a, b = rows
        said = "overlap**" if overlap(a["mean_ci"], b["mean_ci"]) else "do not overlap"
        assert said in report.split(f"{ablation}.png")[1].split("## ")[0]
    assert "likert-model/verdicts.jsonl" in report  # the figures name their sources
    # No arm was judged pairwise here (see the test below for arms that were): nothing to show.
    assert all(r["pairwise"] == {} for rows in results.values() for r in rows)
    assert "Pairwise against" not in report


def test_overlap_verdicts_are_plain():
    rows = [
        {"arm": "a", "mean": 4.0, "mean_ci": [3.5, 4.5]},
        {"arm": "b", "mean": 4.2, "mean_ci": [3.9, 4.6]},
        {"arm": "c", "mean": 2.0, "mean_ci": [1.5, 2.5]},
    ]
    lines = verdict_lines(rows)
    assert "a [3.50, 4.50] and b [3.90, 4.60]: the intervals **overlap**" in lines[0]
    assert lines[1].startswith("- a (4.00) scores above c (2.00): the intervals do not overlap")
    assert lines[2].startswith("- b (4.20) scores above c (2.00)")


def test_a_judge_that_scores_everything_alike_is_called_out(tmp_path):
    from limakit.run.ablation_report import write_ablation_report

    flat = {"mean": 4.0, "mean_ci": [4.0, 4.0], "prompts": 3, "runs": ["arms/x"]}
    results = {"quality": [{"arm": "filtered", "examples": 4, **flat},
                           {"arm": "unfiltered", "examples": 4, **flat}]}  # fmt: skip
    cfg = type("Cfg", (), {"run": "run.yaml", "seeds": [0]})()
    text = write_ablation_report(results, cfg, tmp_path).read_text()
    assert "same score (4)" in text and (tmp_path / "quality.png").exists()
    results["quality"][1] = {**results["quality"][1], "mean": 3.0, "mean_ci": [2.0, 4.0]}
    assert "same score" not in write_ablation_report(results, cfg, tmp_path).read_text()


def test_ablate_config_errors(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text("run: x.yaml\ndiversity: {enabled: true}\n")
    with pytest.raises(LimaError, match="homogeneous"):
        load_ablate_config(str(path))
    path.write_text("run: x.yaml\nquantity: {k: [5, 3]}\ndiversity: {enabled: false}\n")
    with pytest.raises(LimaError, match="k must be"):
        load_ablate_config(str(path))


def test_every_arm_runs_once_per_seed_with_the_seed_everywhere(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(
        "run: x.yaml\nseeds: [0, 7]\nquantity: {k: [2, 3]}\nquality: {enabled: false}\n"
        "diversity: {enabled: false}\nset: [train.epochs=1]\n"
    )
    arms = plan_arms(load_ablate_config(str(path)))
    assert [a.dir_name for a in arms] == [
        "quantity-n4-seed0", "quantity-n8-seed0", "quantity-n4-seed7", "quantity-n8-seed7",
    ]  # fmt: skip
    last = arms[-1].overrides
    assert last[0] == "train.epochs=1" and "data.curate.n=8" in last
    assert {"data.curate.seed=7", "train.seed=7", "sample.seed=7"} <= set(last)


def verdict_rows(n: int, shift: int) -> list[dict]:
    """``n`` pairwise verdicts on prompts p0..: the longer answer tends to win."""
    rows = []
    for i in range(n):
        la, lb = 100 + (i * 37 + shift) % 400, 200 + (i * 53) % 200
        result = "tie" if i % 7 == 0 else ("win" if (la > lb) != (i % 6 == 0) else "lose")
        rows.append({"id": f"p{i}", "sample": 0, "result": result, "len_a": la, "len_b": lb})
    return rows


def test_pairwise_arms_get_score_and_lc_with_difficulty_from_three_arms(tmp_path):
    from limakit.evaluation.lc import MEANING, PREFERENCE, Judged, lc_table
    from limakit.run.ablation_report import pairwise_figures, write_ablation_report

    likert = {"mean": 4.0, "mean_ci": [3.5, 4.5], "prompts": 3, "runs": ["arms/x"]}
    verdicts = {"n=2": verdict_rows(40, 0), "n=4": verdict_rows(40, 91), "n=8": verdict_rows(40, 7)}
    quantity = [{"arm": a, "examples": int(a[2:]), **likert, "pairwise": {"base": list(v)}}
                for a, v in verdicts.items()]  # fmt: skip
    quality = [{"arm": "filtered", "examples": 4, **likert, "pairwise": {"base": verdict_rows(40, 3)}},
               {"arm": "unfiltered", "examples": 4, **likert, "pairwise": {"base": verdict_rows(4, 5)}}]  # fmt: skip
    for rows in (quantity, quality):
        pairwise_figures(rows, resamples=20)
    # Three arms against one baseline: lc_table's difficulty term, the same numbers as lc.py's.
    judged = [Judged(v["id"], a, "base", PREFERENCE[v["result"]], v["len_a"], v["len_b"])
              for a, rows in verdicts.items() for v in rows]  # fmt: skip
    ref = lc_table(judged, resamples=20)
    for r in quantity:
        fig = r["pairwise"]["base"]
        assert fig["lc"]["formula"].startswith("length_controlled_v1")
        assert fig["lc_win_rate"] == pytest.approx(ref[r["arm"]]["lc_win_rate"] / 100)
        assert fig["score"] == pytest.approx(fig["win"] + fig["tie"] / 2)
    # Two arms: the minimal formula; an arm with four verdicts: n/a with its reason.
    filtered, unfiltered = (r["pairwise"]["base"] for r in quality)
    assert filtered["lc"]["formula"] == "length_controlled_minimal"
    assert unfiltered["lc_win_rate"] is None and "too few pairs" in unfiltered["lc"]["reason"]

    cfg = type("Cfg", (), {"run": "run.yaml", "seeds": [0]})()
    text = write_ablation_report(
        {"quantity": quantity, "quality": quality}, cfg, tmp_path
    ).read_text()
    assert "### Pairwise against base" in text and MEANING in text
    assert "| LC win rate [95% CI] |" in text and "n/a (too few pairs (4 valid verdicts" in text
    row = next(x for x in text.splitlines() if x.startswith("| n=4 | 4 | 40 |"))
    assert f"{100 * quantity[1]['pairwise']['base']['lc_win_rate']:.1f}% [" in row
    assert (tmp_path / "quantity-pairwise-base.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_backtranslation_ablation_compares_the_seed_with_each_round(tmp_path, tiny_model_dir):
    from limakit.run.config import run_config_data, validate_run_config

    run_config = tiny_config(tmp_path / "setting", tiny_model_dir, "http://127.0.0.1:9/v1")
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"id": "t1", "text": "Ripe tomatoes keep best on the counter."}\n')
    cfg = {
        "run": str(run_config),
        "quantity": {"enabled": False},
        "quality": {"enabled": False},
        "diversity": {"enabled": False},
        "backtranslation": {
            "enabled": True,
            "n": 4,
            "rounds": 2,
            "set": [f"data.backtranslate.texts=[{texts}]"],
        },
    }
    path = tmp_path / "ablate.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    arms = plan_arms(load_ablate_config(str(path)))
    assert [a.dir_name for a in arms] == [
        "backtranslation-seed-seed0",
        "backtranslation-round-1-seed0",
        "backtranslation-round-2-seed0",
    ]
    grown = []
    for arm in arms:
        data, where = run_config_data(str(run_config), arm.overrides)
        run = validate_run_config(data, where)
        assert run.data.curate.n == 4  # the same seed set in every arm
        grown.append(run.data.backtranslate and run.data.backtranslate.rounds)
    assert grown == [None, 1, 2]


def test_custom_arms_are_named_runs_with_their_own_overrides(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(
        "run: x.yaml\nseeds: [0, 3]\nset: [train.epochs=1]\nquantity: {enabled: false}\n"
        "quality: {enabled: false}\ndiversity: {enabled: false}\n"
        "custom:\n  n: 6\n  arms:\n    plw=0: []\n    plw=0.1: [train.prompt_loss_weight=0.1]\n"
        "    response tuning: [train.drop_prompts=true]\n"
    )
    arms = plan_arms(load_ablate_config(str(path)))
    assert [a.dir_name for a in arms] == [
        "custom-plw0-seed0", "custom-plw0.1-seed0", "custom-response-tuning-seed0",
        "custom-plw0-seed3", "custom-plw0.1-seed3", "custom-response-tuning-seed3",
    ]  # fmt: skip
    assert [a.arm for a in arms[:3]] == ["plw=0", "plw=0.1", "response tuning"]
    plw = arms[4].overrides  # every arm's own overrides after `set`, the seed and size last
    assert plw[:2] == ("train.epochs=1", "train.prompt_loss_weight=0.1")
    assert {"data.curate.n=6", "train.seed=3", "evaluate.likert=true"} <= set(plw)
    for bad, said in (("    a: []\n    a!: []\n", "would share the folder name 'a'"),
                      ("    '==': []\n", "needs a letter or digit")):  # fmt: skip
        path.write_text("run: x.yaml\nquantity: {enabled: false}\nquality: {enabled: false}\n"
                        f"diversity: {{enabled: false}}\ncustom:\n  arms:\n{bad}")  # fmt: skip
        with pytest.raises(LimaError, match=said):
            load_ablate_config(str(path))
    path.write_text("run: x.yaml\ndiversity: {enabled: false}\ncustom: {arms: {}}\n")
    with pytest.raises(LimaError, match="at least one arm"):
        load_ablate_config(str(path))


def test_the_options_config_plans_valid_runs():
    """configs/ablate-options.yaml: four arms of the demo run, each a valid run config whose
    training options are the arm's."""
    from limakit.run.config import run_config_data, validate_run_config

    cfg = load_ablate_config("configs/ablate-options.yaml")
    arms = plan_arms(cfg)
    assert [a.arm for a in arms] == ["plw=0", "plw=0.1", "plw=1", "response-tuning"]
    train = {}
    for arm in arms:
        data, where = run_config_data(cfg.run, arm.overrides)
        run = validate_run_config(data, where)
        train[arm.arm] = run.train
        assert run.shift_base() == run.train.model  # each arm's shift against the base
    assert [t.prompt_loss_weight for t in train.values()] == [0.0, 0.1, 1.0, 0.0]
    assert [t.drop_prompts for t in train.values()] == [False, False, False, True]
    safety_cfg = load_ablate_config("configs/ablate-safety.yaml")
    safety = plan_arms(safety_cfg)
    assert [a.dir_name for a in safety] == [
        "custom-with_safety-seed0", "custom-without_safety-seed0"]  # fmt: skip
    for arm in safety:  # answers capped short on purpose, and the run says so
        assert validate_run_config(*run_config_data(safety_cfg.run, arm.overrides)).allow_short_cap


def test_judge_free_measures_and_shift_per_arm_in_the_report(tmp_path):
    from limakit.core.files import write_json
    from limakit.run.ablate import arm_checks
    from limakit.run.ablation_report import write_ablation_report

    m = {"value": 0.75, "ci": [0.5, 1.0], "n": 4}
    run = tmp_path / "arms" / "custom-plw0.1-seed0"
    write_json(run / "judge" / "checks.json", {"model": answer_checks({
        "ends_turn": m, "repetition": {"value": 0.125, "ci": [0.1, 0.15], "n": 4}}),
        "base": answer_checks({"ends_turn": {"value": 0.0, "ci": [0, 0], "n": 4}})})  # fmt: skip
    shares = {k: {"value": v, "ci": [v - 0.01, v + 0.01], "n": 4}
              for k, v in (("unshifted", 0.9), ("marginal", 0.06), ("shifted", 0.04))}  # fmt: skip
    write_json(run / "shift" / "shift.json", {"base": "smollm2-135m", "files": [
        {"answers": str(run / "answers" / "base.jsonl"), "decoding": "greedy", **shares,
         "shifted": {"value": 0.5, "ci": [0.4, 0.6], "n": 4}},
        {"answers": str(run / "answers" / "model.jsonl"), "decoding": "greedy", **shares}]})  # fmt: skip
    got = arm_checks(run)
    assert got["measures"]["ends_turn"] == m and got["shift"]["shifted"]["value"] == 0.04
    assert got["shift"]["base"] == "smollm2-135m"
    assert arm_checks(tmp_path / "nothing") == {"measures": None, "shift": None}

    likert = {"mean": 4.0, "mean_ci": [3.5, 4.5], "prompts": 4, "pairwise": {}}
    results = {"custom": [
        {"arm": "plw=0", "examples": 6, "runs": ["arms/custom-plw0-seed0"], **likert,
         "checks": [{"run": "arms/custom-plw0-seed0", "seed": 0,
                     **arm_checks(tmp_path / "nothing")}]},
        {"arm": "plw=0.1", "examples": 6, "runs": ["arms/custom-plw0.1-seed0"], **likert,
         "checks": [{"run": "arms/custom-plw0.1-seed0", "seed": 0, **got}]}]}  # fmt: skip
    cfg = type("Cfg", (), {"run": "run.yaml", "seeds": [0]})()
    text = write_ablation_report(results, cfg, tmp_path).read_text()
    assert "## Custom arms" in text and (tmp_path / "custom.png").exists()
    head = (
        "| arm | seed | ends its turn | repeated 4-grams, mean share | unshifted vs smollm2-135m "
    )
    assert head + "| shifted |" in text
    assert "| plw=0.1 | 0 | 75.0% [50.0, 100.0] | 0.125 [0.100, 0.150] | 90.0% [89.0, 91.0] | " \
           "4.0% [3.0, 5.0] |" in text  # fmt: skip
    assert "| plw=0 | 0 | - | - | - | - |" in text


def test_training_options_run_as_ablation_arms(tmp_path, tiny_model_dir):
    """Instruction Modelling and Response Tuning as custom arms of the tiny run, end to end."""
    with FakeServer(judge_behaviour) as srv:
        run_config = tiny_config(tmp_path / "setting", tiny_model_dir, srv.url)
        cfg = {"run": str(run_config),
               "set": ["baselines=[]", "evaluate.pairwise=false", "select.enabled=false",
                       "train.epochs=1"],
               "quantity": {"enabled": False}, "quality": {"enabled": False},
               "diversity": {"enabled": False},
               "custom": {"n": 4, "arms": {"lima": [], "im+rt": [
                   "train.prompt_loss_weight=0.1", "train.drop_prompts=true"]}}}  # fmt: skip
        path = tmp_path / "ablate.yaml"
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        out = tmp_path / "ablate"
        assert main(["ablate", str(path), "--out", str(out)]) == 0
    arm = out / "arms" / "custom-im-rt-seed0"
    trained = yaml.safe_load((arm / "train" / "train_config.yaml").read_text())
    assert trained["prompt_loss_weight"] == 0.1 and trained["drop_prompts"] is True
    plain = yaml.safe_load((out / "arms" / "custom-lima-seed0" / "train" / "train_config.yaml")
                           .read_text())  # fmt: skip
    assert plain["prompt_loss_weight"] == 0.0 and plain["drop_prompts"] is False
    results = read_json(out / "ablations.json")
    assert [r["arm"] for r in results["custom"]] == ["lima", "im+rt"]
    for r in results["custom"]:
        assert r["checks"][0]["measures"]["ends_turn"]["n"] == 3
    report = (out / "report.md").read_text()
    assert "## Custom arms" in report and "| im+rt | 0 | " in report
