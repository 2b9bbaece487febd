"""Streamed text: token by token, the same text as decoding every id at once, on real tokenizers."""

from __future__ import annotations

import random

import pytest

from limakit.generation.streaming import TextStream

TEXTS = [
    "Héllo wörld, ça va? 日本語のテキスト 🎉🚀 done.\n\nNext paragraph: naïve café, 3 € each.",
    "def f(x):\n    return x  # ünïcode ✓ and  two  spaces",
    "plain ascii words, then punctuation: (a), [b]; 'c' \"d\"!",
    "runs of bytes longer than the lookback: €€🚀 and 🚀€ end",
]


def _sentencepiece_like():
    """A Llama-style tokenizer (metaspace, byte fallback, the leading space stripped on decode),
    trained here on a few lines: the other family of decoders besides byte-level BPE."""
    import json

    from tokenizers import Tokenizer, decoders, models, normalizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    corpus = [t.replace("€", "").replace("🚀", "") for t in TEXTS] * 20  # those two: bytes only
    specials = ["<unk>", "<s>", "</s>"]
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=160, special_tokens=specials))
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    for b in range(256):  # the byte tokens are ordinary tokens, as in Llama's vocabulary
        vocab.setdefault(f"<0x{b:02X}>", len(vocab))
    spec["model"].update(byte_fallback=True, fuse_unk=True, unk_token="<unk>")
    tok = Tokenizer.from_str(json.dumps(spec))
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def _streamed(tok, ids, stop=None) -> tuple[str, TextStream]:
    s = TextStream(tok, stop=stop)
    return "".join(s.push(i) for i in ids) + s.finish(), s


@pytest.fixture(params=["byte-level BPE (SmolLM2)", "sentencepiece-like"])
def tokenizer(request, smollm2_tokenizer):
    return smollm2_tokenizer if request.param.startswith("byte") else _sentencepiece_like()


def test_streamed_text_is_the_text_of_all_ids_at_once(tokenizer):
    """Real answers, and the same with random ids (special tokens, stray bytes) mixed in."""
    rng = random.Random(0)
    pieces = [
        tokenizer.convert_ids_to_tokens(tokenizer(t, add_special_tokens=False).input_ids)
        for t in TEXTS
    ]
    cut = [
        tok for p in pieces for tok in p if "\ufffd" in tokenizer.convert_tokens_to_string([tok])
    ]
    assert cut  # characters of several bytes really are split over tokens here
    # Byte fallback (Llama-style) turns every byte of a run into U+FFFD when any byte of it is
    # invalid, a decision no stream can make before the run ends: so for it random ids are never
    # bytes and never cut a run of bytes.
    bytes_ok = tokenizer.convert_ids_to_tokens(0) != "<unk>"

    def is_byte(i: int) -> bool:
        return not bytes_ok and tokenizer.convert_ids_to_tokens(i).startswith("<0x")

    candidates = [i for i in range(len(tokenizer)) if not is_byte(i)]
    for trial in range(200):
        ids = []
        for t in rng.sample(TEXTS, 2):
            ids += tokenizer(t, add_special_tokens=False).input_ids
        for _ in range(rng.randint(0, 8) if trial else 0):
            at = rng.choice([k for k in range(len(ids) + 1) if k == 0 or not is_byte(ids[k - 1])])
            ids.insert(at, rng.choice(candidates))
        out, _ = _streamed(tokenizer, ids)
        assert out == tokenizer.decode(ids, skip_special_tokens=True), (trial, ids)


def test_a_character_split_over_tokens_is_held_back_until_complete(smollm2_tokenizer):
    tok = smollm2_tokenizer
    ids = tok("ok 🎉", add_special_tokens=False).input_ids
    s = TextStream(tok)
    deltas = [s.push(i) for i in ids]
    assert all("\ufffd" not in d for d in deltas) and "".join(deltas) == "ok 🎉"
    assert "" in deltas[1:]  # some token ended inside the emoji: nothing was emitted for it
    # A sequence cut inside a character (length stop) still ends as decoding all ids ends.
    cut = ids[:-1]
    out, _ = _streamed(tok, cut)
    assert out == tok.decode(cut) and out.endswith("\ufffd")


def test_stop_strings_across_token_boundaries_on_a_real_tokenizer(tokenizer):
    for t in TEXTS:
        ids = tokenizer(t, add_special_tokens=False).input_ids
        full = tokenizer.decode(ids, skip_special_tokens=True)
        for stop in ("\n\n", "ça", ": (", "✓ and"):
            out, s = _streamed(tokenizer, ids, stop=[stop])
            if stop in full:
                assert s.stopped and out == full[: full.index(stop)]
            else:
                assert not s.stopped and out == full
