"""Sampling answers with LIMA's decoding: a continuous-batching engine, batch generation to
resumable JSONL, a terminal chat and an OpenAI-compatible server.

>>> from limakit.generation import DecodeConfig, generate_answers  # doctest: +SKIP
>>> answers = generate_answers("smollm2-135m", prompts, samples=5, out="answers.jsonl")  # doctest: +SKIP
"""

from limakit.generation.batch import generate_answers
from limakit.generation.config import DecodeConfig

__all__ = ["DecodeConfig", "generate_answers"]
