"""Optional vLLM backend for ``lima generate/serve --backend vllm`` (machines with a GPU).

vLLM is not a limakit dependency: install it yourself (``pip install vllm``). The checkpoint must
carry the limakit chat format (``lima train`` saves it), so prompts render the same as in training.
Differences from the built-in engine: vLLM's repetition penalty also counts prompt tokens, and its
random streams differ, so the same seed gives different (equally valid) samples. The requests it
builds are tested with a stand-in for vLLM; a real run is tested where vLLM is installed.
"""

from __future__ import annotations

from limakit.errors import LimaError
from limakit.example import Example, Message
from limakit.generation.config import DecodeConfig


def _seed(*keys: object) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:4], "little") & 0x7FFFFFFF


def generate_vllm(
    model: str, todo: list[tuple[Example, int]], *, seed: int, config: DecodeConfig, model_name=None
) -> list[Example]:
    """Answer ``(prompt, sample)`` pairs with vLLM; returns Examples shaped like the HF backend's."""
    try:
        from vllm import LLM, SamplingParams
    except ImportError:
        raise LimaError(
            "--backend vllm needs vLLM installed (pip install vllm; a GPU machine)"
        ) from None
    if not isinstance(model, str):
        raise LimaError("the vLLM backend takes a model folder or alias, not a loaded model")
    from limakit.models import load_tokenizer, resolve
    from limakit.template import Template, render_prompt

    path = resolve(model)
    tok = load_tokenizer(path)
    eot = tok.convert_tokens_to_ids(Template.from_tokenizer(tok).eot)
    llm = LLM(model=path, seed=seed)
    prompts, params = [], []
    for p, k in todo:
        prompts.append({"prompt_token_ids": render_prompt(p.messages, tok)})
        params.append(
            SamplingParams(
                temperature=config.temperature,
                top_p=config.top_p,
                repetition_penalty=config.repetition_penalty,
                max_tokens=config.max_new_tokens,
                stop_token_ids=[eot],
                seed=_seed(seed, p.id, k),
            )
        )
    decoding = {**config.model_dump(), "seed": seed, "backend": "vllm"}
    out = []
    for (p, k), res in zip(todo, llm.generate(prompts, params)):
        c = res.outputs[0]
        meta = {
            **p.meta,
            "sample": k,
            "model": model_name or model,
            "stop": "eot" if c.finish_reason == "stop" else "length",
            "new_tokens": len(c.token_ids),
            "decoding": decoding,
        }
        messages = [*p.messages, Message("assistant", c.text.strip())]
        out.append(Example(messages=messages, source=p.source, id=p.id, meta=meta))
    return out


def serve_command(
    model: str,
    *,
    host: str,
    port: int,
    config: DecodeConfig,
    model_name: str | None = None,
    api_key: str | None = None,
) -> list[str]:
    """The command line of vLLM's OpenAI-compatible server for a limakit checkpoint.

    The checkpoint's tokenizer carries the limakit chat template and its generation config names
    the EOT as end of sequence, so vLLM renders and stops as training did; LIMA's decoding becomes
    the server's default sampling (a request may still override it).
    """
    import json
    import sys

    from limakit.models import resolve

    defaults = {
        "temperature": config.temperature,
        "top_p": config.top_p,
        "repetition_penalty": config.repetition_penalty,
        "max_new_tokens": config.max_new_tokens,
    }
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", resolve(model)]
    cmd += ["--host", host, "--port", str(port), "--served-model-name", model_name or model]
    cmd += ["--generation-config", "auto", "--override-generation-config", json.dumps(defaults)]
    if api_key:
        cmd += ["--api-key", api_key]
    return cmd
