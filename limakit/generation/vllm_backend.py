"""Optional vLLM backend for ``lima generate/serve --backend vllm`` (machines with a GPU).

vLLM is not a limakit dependency: install it yourself (``pip install vllm``). Prompts are rendered
here, in the chat format :mod:`limakit.generation.chat_format` picks (a limakit checkpoint carries
limakit's, which ``lima train`` saves), and handed to vLLM as token ids.
Differences from the built-in engine: vLLM's repetition penalty also counts prompt tokens, and its
random streams differ, so the same seed gives different (equally valid) samples. The requests it
builds are tested with a stand-in for vLLM; a real run is tested where vLLM is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from limakit.core.errors import LimaError
from limakit.generation.config import DecodeConfig
from limakit.records.example import Example

if TYPE_CHECKING:
    from limakit.models import LoadedModel


def _seed(*keys: object) -> int:
    import hashlib

    return int.from_bytes(hashlib.sha256(repr(keys).encode()).digest()[:4], "little") & 0x7FFFFFFF


def generate_vllm(
    loaded: LoadedModel,
    todo: list[tuple[Example, int]],
    *,
    seed: int,
    config: DecodeConfig,
    model_name: str | None = None,
) -> list[Example]:
    """Answer ``(prompt, sample)`` pairs with vLLM; returns Examples shaped like the HF backend's.

    Prompts with several user turns are answered turn by turn, one ``generate`` call per turn.
    vLLM loads the weights itself, from the folder ``loaded`` names; the tokenizer, template and
    EOT come from limakit's loader (``loaded``: a :class:`~limakit.models.LoadedModel` read
    without weights).
    """
    try:
        from vllm import LLM
    except ImportError:
        raise LimaError(
            "--backend vllm needs vLLM installed (pip install vllm; a GPU machine)"
        ) from None
    if loaded.model is not None:
        raise LimaError(
            "the vLLM backend reads the weights itself: load the model without weights "
            "(model_for_answers(..., backend='vllm'))"
        )
    from limakit.generation.chat_format import ChatFormat
    from limakit.generation.turns import Conversation
    from limakit.models import resolve

    path = resolve(loaded.name)
    fmt = ChatFormat.for_loaded(loaded, generation_config=_generation_config(path))
    llm = LLM(model=path, seed=seed)
    convs = [Conversation(p, k) for p, k in todo]
    while waiting := [c for c in convs if not c.done]:
        prompts = [{"prompt_token_ids": fmt.prompt_ids(c.context())} for c in waiting]
        params = [_params(config, fmt, seed, c) for c in waiting]
        for c, res in zip(waiting, llm.generate(prompts, params)):
            out = res.outputs[0]
            stop = "eot" if out.finish_reason == "stop" else "length"
            c.answer(out.text.strip(), stop, len(out.token_ids))
    decoding = {**config.model_dump(exclude={"template"}), "seed": seed, "backend": "vllm"}
    meta = {"model": model_name or loaded.name, "decoding": decoding, "template": fmt.name}
    return [c.example(meta) for c in convs]


def _generation_config(path: str):
    try:
        from transformers import GenerationConfig

        return GenerationConfig.from_pretrained(path)
    except (OSError, ValueError):
        return None


def _params(config: DecodeConfig, fmt, seed: int, c):
    from vllm import SamplingParams

    # The first answer keeps the stream a one-turn prompt has always had.
    keys = (seed, c.prompt.id, c.sample) if c.turn == 0 else (seed, c.prompt.id, c.sample, c.turn)
    return SamplingParams(
        temperature=config.temperature,
        top_p=config.top_p,
        repetition_penalty=config.repetition_penalty,
        max_tokens=config.max_new_tokens,
        stop_token_ids=sorted(fmt.stop_ids),
        seed=_seed(*keys),
    )


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
