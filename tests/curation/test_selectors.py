"""Pool selectors on small hand-built pools; scoring through a real local judge server, a hand-set
model for IFD, a tiny random model for the batching, the packaged MiniLM for the embedder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from limakit.cli import main
from limakit.curation import CurateConfig, curate
from limakit.curation import selectors as S
from limakit.curation.card import mean_cosine_distance
from limakit.curation.score_cache import ScoreCache, content_hash
from limakit.curation.scoring import answer_losses, ifd_pair, ifd_scores, judge_scores
from limakit.judging.cache import JudgeCache
from limakit.judging.config import JudgeConfig
from limakit.records.example import Example, Message, load_examples
from tests.evaluation.fake_server import Act, FakeServer


def ex(prompt: str, answer: str, i: int = 0) -> Example:
    return Example([Message("user", prompt), Message("assistant", answer)], "pool", f"e{i}")


def pool_of(n: int) -> list[Example]:
    return [ex(f"question {i}", f"answer {i} " + "x" * (i % 7), i) for i in range(n)]


def blobs(sizes: list[int], dim: int = 16, spread: float = 0.05, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight groups around orthogonal directions: group g is axis g."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, n in enumerate(sizes):
        v = np.zeros((n, dim), dtype=np.float32)
        v[:, g] = 1.0
        v += rng.normal(0, spread, size=v.shape).astype(np.float32)
        rows.append(v)
    x = np.concatenate(rows)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def group_of(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


# --- the selectors themselves -------------------------------------------------------------------


def test_random_honours_budget_and_seed():
    pool = pool_of(50)
    a, b, c = (
        S.random_select(pool, 10, 1),
        S.random_select(pool, 10, 1),
        S.random_select(pool, 10, 2),
    )
    assert len(a) == len(set(a)) == 10 and a == b and a != c
    assert sorted(S.random_select(pool, 99, 0)) == list(range(50))  # budget above the pool: all


def test_longest_takes_the_longest_and_breaks_ties_by_seed():
    pool = [ex("q", "a" * n, i) for i, n in enumerate([5, 50, 7, 50, 50, 3, 40])]
    picked = S.longest(pool, 4, seed=0)
    assert len(picked) == 4 and set(picked[:3]) == {1, 3, 4} and picked[3] == 6
    assert S.longest(pool, 4, seed=0) == picked
    orders = {tuple(S.longest(pool, 3, seed=s)) for s in range(20)}
    assert len(orders) > 1 and all(set(o) == {1, 3, 4} for o in orders)  # ties: seeded order


def test_diverse_k_center_covers_every_cluster_first():
    sizes = [60, 25, 10, 5]  # the smallest cluster is the easiest to miss by sampling
    emb = blobs(sizes)
    pool = pool_of(len(emb))
    for seed in range(5):
        picked = S.diverse(pool, 4, seed, embeddings=emb)
        assert sorted(group_of(sizes)[picked]) == [0, 1, 2, 3]
        assert S.diverse(pool, 4, seed, embeddings=emb) == picked
    assert len(S.diverse(pool, 30, 0, embeddings=emb)) == 30
    with pytest.raises(ValueError, match="embeddings must be"):
        S.diverse(pool, 4, 0, embeddings=emb[:-1])


def test_clusters_spreads_the_budget_over_known_clusters():
    sizes = [60, 25, 10, 5]
    emb = blobs(sizes)
    pool = pool_of(len(emb))
    picked = S.clusters(pool, 8, 3, embeddings=emb, k=4)
    assert (
        len(picked) == len(set(picked)) == 8
        and S.clusters(pool, 8, 3, embeddings=emb, k=4) == picked
    )
    groups = group_of(sizes)[picked]
    assert np.bincount(groups, minlength=4).tolist() == [2, 2, 2, 2]
    assert sorted(groups[:4]) == [0, 1, 2, 3]  # any prefix is spread too (round-robin order)
    # A cluster smaller than its share leaves the rest to the others.
    big = np.bincount(group_of(sizes)[S.clusters(pool, 50, 0, embeddings=emb, k=4)], minlength=4)
    assert big.tolist()[2:] == [10, 5] and min(big.tolist()[:2]) >= 17 and big.sum() == 50


def test_kmeans_recovers_the_blobs():
    sizes = [30, 20, 10]
    labels, centres = S.kmeans(blobs(sizes), 3, seed=0)
    truth = group_of(sizes)
    # Same partition up to the cluster numbering.
    assert len({(a, b) for a, b in zip(labels, truth)}) == 3
    assert np.allclose(np.linalg.norm(centres, axis=1), 1.0, atol=1e-5)


def test_judge_rated_follows_the_scores_exactly():
    pool = pool_of(8)
    scores = np.array([3.0, 5.0, 1.0, 4.0, np.nan, 2.0, 4.5, 0.5])
    assert S.judge_rated(pool, 5, 0, scores=scores) == [1, 6, 3, 0, 5]
    assert 4 not in S.judge_rated(pool, 8, 0, scores=scores)  # no score: never taken
    tied = np.array([5, 5, 5, 5, 1, 1, 1, 1], dtype=float)
    orders = {tuple(S.judge_rated(pool, 4, s, scores=tied)) for s in range(10)}
    assert all(set(o) == {0, 1, 2, 3} for o in orders) and len(orders) > 1


def test_deita_distance_filter_never_takes_two_near_copies():
    rng = np.random.default_rng(0)
    base = rng.normal(size=(10, 32)).astype(np.float32)
    near = base + rng.normal(0, 0.01, size=base.shape).astype(np.float32)  # near-copies
    emb = np.concatenate([base, near])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pool = pool_of(20)
    # The near-copies score highest: without the filter they would fill the budget in pairs.
    quality = np.array([2.0] * 10 + [3.0] * 10)
    complexity = np.arange(20, dtype=float) % 10 + 1
    picked = S.deita(pool, 10, 0, complexity=complexity, quality=quality, embeddings=emb)
    sims = emb[picked] @ emb[picked].T
    assert len(picked) == 10 and np.max(sims - np.eye(10) * 2) < 0.9
    assert picked[:3] == [19, 18, 17]  # score order: complexity x quality
    assert sorted(i % 10 for i in picked) == list(range(10))  # one of each pair


def test_ifd_keeps_below_one_and_takes_the_highest():
    pool = pool_of(5)
    got = S.ifd(pool, 5, 0, scores=np.array([0.2, 1.3, 0.9, 1.0, np.nan]))
    assert got == [2, 0]


def test_mean_cosine_distance_matches_all_pairs():
    x = blobs([7, 5, 3])
    sims = x @ x.T
    brute = 1 - (sims.sum() - np.trace(sims)) / (len(x) * (len(x) - 1))
    assert mean_cosine_distance(x) == pytest.approx(float(brute), abs=1e-5)


# --- the score cache -----------------------------------------------------------------------------


def test_cache_is_keyed_by_content_and_scorer(tmp_path):
    c = ScoreCache(tmp_path / "c.sqlite")
    a, b = ex("q", "a"), ex("q", "b")
    same_text = Example(a.messages, "elsewhere", "other-id", {"x": 1})
    assert content_hash(a) == content_hash(same_text) != content_hash(b)
    c.put_vectors("emb", [content_hash(a)], np.array([[0.6, 0.8]], dtype=np.float32))
    c.put_scores("judge", [content_hash(a)], [4.0])
    c.close()
    c = ScoreCache(tmp_path / "c.sqlite")
    v, found = c.get_vectors("emb", [content_hash(b), content_hash(same_text)], 2)
    assert found.tolist() == [False, True] and np.allclose(v[1], [0.6, 0.8], atol=1e-3)
    assert np.isnan(c.get_scores("other-judge", [content_hash(a)])[0])
    assert c.get_scores("judge", [content_hash(a), content_hash(a)]).tolist() == [4.0, 4.0]


# --- judge scores through a real local server ----------------------------------------------------


def _rating_judge(body: dict, n: int) -> Act:
    """Rates a pair by the digit after SCORE= in the response; nonsense for 'MUMBLE'."""
    text = body["messages"][-1]["content"]
    if "MUMBLE" in text:
        return Act("I cannot decide.")
    if "SCORE=" not in text:  # Deita's complexity prompt shows the instruction only
        return Act("Moderate.\n[[3]]")
    digit = text.split("SCORE=")[1][0]
    return Act(f"Looks fine.\n[[{digit}]]")


def test_fake_judge_scores_order_judge_rated_exactly_and_are_cached(tmp_path):
    ratings = [3, 5, 1, 4, 2, 5, 3]
    pool = [ex(f"q{i}", f"answer {i} SCORE={r}", i) for i, r in enumerate(ratings)]
    pool.append(ex("q-bad", "MUMBLE", 99))
    keys = [content_hash(e) for e in pool]
    cache = ScoreCache(tmp_path / "s.sqlite")
    with FakeServer(_rating_judge) as server:
        jcfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        scores, report = judge_scores(
            pool, keys, "rating", jcfg, cache, JudgeCache(tmp_path / "j.sqlite")
        )
        first_calls = len(server.calls)
        again, report2 = judge_scores(
            pool, keys, "rating", jcfg, cache, JudgeCache(tmp_path / "j.sqlite")
        )
        assert len(server.calls) == first_calls  # everything came from the caches
    assert scores[:7].tolist() == ratings and np.isnan(scores[7])
    assert report.unscored == 1 and "no parseable score" in report.notes[0]
    assert report2.computed == 1 and report2.cached == 7  # only the unscorable one is asked again
    picked = S.judge_rated(pool, 4, 0, scores=again)
    assert [ratings[i] for i in picked] == [5, 5, 4, 3] and set(picked[:2]) == {1, 5}
    # The rating prompt went out with its 1-5 scale and the pair.
    user = server.calls[0]["messages"][-1]["content"]
    assert "[Instruction]\nq" in user and "1 to 5" in user


def test_curate_judge_rated_and_deita_end_to_end(tmp_path, capsys):
    pool_file = tmp_path / "pool.jsonl"
    rows = [
        {"instruction": f"Task {i}: explain topic {i}.", "output": f"Answer {i} SCORE={1 + i % 5}"}
        for i in range(20)
    ]
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows))  # Alpaca records
    with FakeServer(_rating_judge) as server:
        judge = tmp_path / "judge.yaml"
        judge.write_text(f"backend: openai\nmodel: judge\nbase_url: {server.url}\n")
        common = ["curate", "--pool", str(pool_file), "--n", "4", "--no-progress",
                  "--judge", str(judge), "--score-cache", str(tmp_path / "cache.sqlite")]  # fmt: skip
        assert main([*common, "--select", "judge-rated", "--out", str(tmp_path / "jr")]) == 0
        chosen = load_examples(tmp_path / "jr" / "examples.jsonl")
        assert all(e.answer.endswith("SCORE=5") for e in chosen) and len(chosen) == 4
        assert "| rating score, mean | 3.0 | 5.0 |" in (tmp_path / "jr" / "card.md").read_text()
        calls = len(server.calls)
        assert (
            main([*common, "--select", "judge-rated", "--n", "2", "--out", str(tmp_path / "b")])
            == 0
        )
        assert len(server.calls) == calls  # another budget: the scores came from the cache
        # No --diversity: deita embeds anyway; keep it off the packaged embedder with a tiny one.
        assert (
            main([*common, "--select", "deita", "--embedder", _tiny_embedder(tmp_path),
                  "--out", str(tmp_path / "d")]) == 0
        )  # fmt: skip
    assert len(load_examples(tmp_path / "d" / "examples.jsonl")) >= 1
    card = (tmp_path / "d" / "card.md").read_text()
    assert "Selector `deita`" in card and "mean pairwise cosine distance" in card
    assert (tmp_path / "d" / "selection_pca.png").read_bytes()[:4] == b"\x89PNG"
    rc = main(["curate", "--pool", str(pool_file), "--select", "judge-rated",
               "--out", str(tmp_path / "x"), "--no-progress"])  # fmt: skip
    assert rc == 2 and "needs a judge" in capsys.readouterr().err


def _tiny_embedder(tmp_path: Path) -> str:
    """A saved random-weight BERT with the packaged MiniLM's tokenizer (fast to load and run)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from limakit.embeddings import resolve_embedder

    path = tmp_path / "tiny-bert"
    if not path.exists():
        tok = AutoTokenizer.from_pretrained(resolve_embedder("all-minilm-l6-v2"))
        torch.manual_seed(0)
        cfg = BertConfig(
            vocab_size=tok.vocab_size,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
        BertModel(cfg).save_pretrained(path)
        tok.save_pretrained(path)
    return str(path)


# --- IFD ---------------------------------------------------------------------------------------


class CopyModel(torch.nn.Module):
    """A hand-set causal LM: predicts the token that followed the previous occurrence of the
    current token (an induction head), and is uniform where the token was not seen before. Its
    loss on an answer that copies the prompt is near 0 with the prompt and log(V) without."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, input_ids, attention_mask=None, position_ids=None, logits_to_keep=0):
        b, t = input_ids.shape
        logits = torch.zeros(b, t, self.vocab, device=self.anchor.device)
        for r in range(b):
            ids = input_ids[r].tolist()
            valid = attention_mask[r].tolist() if attention_mask is not None else [1] * t
            for p in range(t):
                for q in range(p - 1, -1, -1):
                    if valid[q] and ids[q] == ids[p]:
                        logits[r, p, ids[q + 1]] = 30.0
                        break
        keep = logits[:, -logits_to_keep:] if logits_to_keep else logits

        class Out:
            pass

        out = Out()
        out.logits = keep
        return out


def test_ifd_ranks_a_prompt_predictable_answer_above_an_unpredictable_one(
    smollm2_tokenizer, tmp_path
):
    from limakit.models import LoadedModel
    from limakit.records.template import Template

    tok, template = smollm2_tokenizer, Template()
    text = "Copper kettles whistle softly while eleven violet herons circle the quarry"
    copy = ex(f"Repeat after me: {text}", text, 0)  # the answer is in the prompt
    fresh = ex("Name a harbour town.", "Seven lanterns glow beside the northern pier", 1)
    pool = [fresh, copy]
    model = CopyModel(len(tok))
    cpu = torch.device("cpu")
    loaded = LoadedModel(model, tok, template, template.token_id(tok), cpu, torch.float32)
    scores, report = ifd_scores(
        pool,
        [content_hash(e) for e in pool],
        lambda: loaded,
        "ifd-copy",
        ScoreCache(tmp_path / "s.sqlite"),
        max_tokens=256,
        batch_size=2,
        chunk=1,  # one pair per tokenisation chunk: the chunks must join up
    )
    assert scores[1] < 0.5  # the prompt makes the copied answer almost free
    assert scores[0] > 1.0  # the prompt does not help (here it misleads the first token)
    assert S.ifd(pool, 2, 0, scores=scores) == [1]  # ranked first; IFD >= 1 is dropped
    assert report.computed == 2


def test_answer_losses_batched_equal_one_at_a_time_on_a_tiny_model(smollm2_tokenizer):
    from conftest import make_tiny_model
    from devicecheck import PACKAGE, DevicelessFactories

    from limakit.records.template import Template

    tok, template = smollm2_tokenizer, Template()
    model = make_tiny_model(tok).eval()
    pool = [
        ex("Short?", "Yes."),
        ex("A much longer question about the weather in the hills " * 3, "It rains a lot there."),
        Example(
            [Message("user", "Hi"), Message("assistant", "Hello!"), Message("user", "Sum 2+2?"),
             Message("assistant", "Four, since two and two make four.")]
        ),
    ]  # fmt: skip
    pairs = [ifd_pair(e, tok, template, 64) for e in pool]
    seqs, n = [p[0] for p in pairs], [p[2] for p in pairs]
    recorder = DevicelessFactories()
    with recorder:
        together = answer_losses(model, seqs, n, tok.pad_token_id)
    # Host data reaches the model's device through the one copy helper, nothing else is made
    # off the device.
    assert {fn for f, fn in recorder.calls if f.startswith(PACKAGE)} <= {"host_to_device"}
    alone = [answer_losses(model, [s], [k], tok.pad_token_id)[0] for s, k in zip(seqs, n)]
    assert np.allclose(together, alone, atol=1e-4)
    # Against a direct computation: the mean loss of the last n tokens, unpadded.
    ids = torch.tensor([seqs[2]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    direct = torch.nn.functional.cross_entropy(logits[-n[2] :], ids[0, 1:][-n[2] :])
    assert together[2] == pytest.approx(float(direct), abs=1e-4)
    # The answer tokens are the same with and without the prompt; the last turn is the one scored.
    with_p, without, k = pairs[2]
    assert with_p[-k:] == without[-k:] and tok.decode(with_p[-k:]).startswith("Four")
    assert len(pairs[1][0]) <= 64


def test_curate_ifd_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir):
    pool_file = tmp_path / "pool.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"Question {i}?"},
                      {"role": "assistant", "content": f"Answer number {i}. " * (1 + i % 3)}]}
        for i in range(6)
    ]  # fmt: skip
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = CurateConfig(
        pool=[str(pool_file)],
        select="ifd",
        n=3,
        out=str(tmp_path / "out"),
        progress=False,
        selection={
            "ifd_model": tiny_model_dir,
            "max_ifd": 100.0,
            "device": "cpu",
            "cache": str(tmp_path / "c.sqlite"),
        },
    )
    s = curate(cfg)
    assert s.examples == 3 and s.selection["computed"]["ifd"] == 6
    s2 = curate(cfg.model_copy(update={"n": 2, "out": str(tmp_path / "o2")}))
    assert s2.selection["computed"]["ifd"] == 0  # all from the cache
    first = [e.id for e in load_examples(tmp_path / "out" / "examples.jsonl")]
    assert [e.id for e in load_examples(tmp_path / "o2" / "examples.jsonl")] == first[:2]


# --- the packaged MiniLM (loaded in these two tests only) ----------------------------------------


def test_packaged_minilm_embeds_unit_vectors_with_meaning():
    from limakit.embeddings import Embedder

    emb = Embedder("all-minilm-l6-v2", device="cpu", dtype="float32")
    v = emb.embed(
        [
            "How do I bake sourdough bread?",
            "What is the best way to make sourdough at home?",
            "Explain the tax rules for capital gains.",
        ]  # fmt: skip
    )
    assert v.shape == (3, 384) and np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.6 > v[0] @ v[2]
    # Batching and padding change nothing: one at a time gives the same vectors.
    one = np.concatenate([emb.embed([t]) for t in ["Explain the tax rules for capital gains."]])
    assert np.allclose(one[0], v[2], atol=1e-4)


def test_curate_diverse_with_minilm_covers_topics_and_reuses_the_cache(tmp_path):
    topics = ["baking bread", "python lists", "income tax", "guitar chords"]
    rows = []
    for i in range(24):
        t = topics[i % 4] if i < 20 else topics[0]  # bread is over-represented
        rows.append({"conversations": [
            {"from": "human", "value": f"Tell me about {t}, question {i}."},
            {"from": "gpt", "value": f"A note on {t}: " + f"{t} detail {i}. " * (1 + i % 3)}]})  # fmt: skip
    pool_file = tmp_path / "pool.json"  # a ShareGPT .json list
    pool_file.write_text(json.dumps(rows))
    cache = str(tmp_path / "cache.sqlite")
    args = ["curate", "--pool", str(pool_file), "--select", "diverse", "--n", "4",
            "--no-progress", "--score-cache", cache, "--device", "cpu"]  # fmt: skip
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    chosen = load_examples(tmp_path / "a" / "examples.jsonl")
    assert sorted(next(t for t in topics if t in e.prompt) for e in chosen) == sorted(topics)
    card = (tmp_path / "a" / "card.md").read_text()
    assert "Computed this run (not in the cache): embeddings 24" in card
    assert (
        main([*args, "--out", str(tmp_path / "b"), "--select", "clusters", "--clusters", "4"]) == 0
    )
    card = (tmp_path / "b" / "card.md").read_text()
    assert "embeddings 0" in card and "| pool k-means clusters covered |" in card
    chosen = load_examples(tmp_path / "b" / "examples.jsonl")
    assert sorted(next(t for t in topics if t in e.prompt) for e in chosen) == sorted(topics)


def test_longest_with_diversity_always_embeds_for_the_card(tmp_path):
    pool_file = tmp_path / "pool.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": f"Question {i}?"},
                      {"role": "assistant", "content": "word " * (5 + i)}]}
        for i in range(12)
    ]  # fmt: skip
    pool_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = dict(pool=[str(pool_file)], select="longest", n=3, progress=False)
    sel = {"embedder": _tiny_embedder(tmp_path), "cache": str(tmp_path / "c.sqlite")}
    s = curate(CurateConfig(out=str(tmp_path / "a"), selection=sel, **base))
    assert "diversity" not in s.selection and not (tmp_path / "a" / "selection_pca.png").exists()
    s = curate(
        CurateConfig(out=str(tmp_path / "b"), selection={**sel, "diversity": "always"}, **base)
    )
    d = s.selection["diversity"]
    assert s.selection["computed"] == {"embeddings": 12} and 0 < d["selection"] <= 2
    assert d["clusters"] == 2 and 1 <= d["covered"] <= 2
    assert [len(e.answer) for e in load_examples(tmp_path / "b" / "examples.jsonl")] == [80, 75, 70]
    assert (tmp_path / "b" / "selection_pca.png").exists()
    assert s.eligible["pool"] == 12  # the funnel counts the whole pool, not the n picked


def test_a_judge_that_scores_nothing_is_one_clear_error(tmp_path):
    from limakit.core.errors import LimaError

    pool = [ex(f"q{i}", f"a{i}", i) for i in range(3)]
    with FakeServer(lambda body, n: Act("I would rather not say.")) as server:
        jcfg = JudgeConfig(backend="openai", model="judge", base_url=server.url)
        with pytest.raises(LimaError, match="judge rating: no example could be scored"):
            judge_scores(
                pool,
                [content_hash(e) for e in pool],
                "rating",
                jcfg,
                ScoreCache(tmp_path / "s.sqlite"),
                JudgeCache(tmp_path / "j.sqlite"),
            )
