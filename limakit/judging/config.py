"""The judge config: which model judges, through which backend, with which prompt.

Loaded from YAML (``configs/judge-openai.yaml``) with ``key=value`` overrides::

    cfg = load_config(JudgeConfig, "configs/judge-openai.yaml", ["concurrency=8"])
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from limakit.core.config import Config


class JudgeConfig(Config):
    """An LLM judge. The API key is never a field: only the *name* of the variable holding it."""

    backend: Literal["openai", "local"] = Field(
        "openai", description="'openai' (any OpenAI-compatible endpoint) or 'local' (transformers)."
    )
    model: str = Field(
        "gpt-4o", description="Model name sent to the endpoint, or a local alias/folder."
    )
    base_url: str | None = Field(
        None, description="Endpoint root including /v1, e.g. http://127.0.0.1:8000/v1 (openai)."
    )
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="Environment variable holding the API key (never logged)."
    )
    prompt: Literal["lima", "mt-bench-pair-v2"] = Field(
        "lima", description="Pairwise prompt: LIMA's three-way question or MT-Bench pair-v2."
    )
    concurrency: int = Field(16, ge=1, description="Requests in flight at once (openai).")
    timeout: float = Field(60.0, gt=0, description="Seconds before a request counts as timed out.")
    max_retries: int = Field(
        5, ge=0, description="Retries on 429 (honouring Retry-After), 5xx and timeouts."
    )
    temperature: float = Field(0.0, ge=0, description="Judge sampling temperature (0: greedy).")
    max_tokens: int = Field(1024, ge=1, description="Longest judge reply (explanation + verdict).")
    cost_per_input_token: float | None = Field(None, ge=0, description="Price of a prompt token.")
    cost_per_output_token: float | None = Field(
        None, ge=0, description="Price of a completion token."
    )
    cache: str | None = Field(
        None, description="SQLite cache file; default OUT_DIR/cache.sqlite. Share it across runs."
    )
    bootstrap: int = Field(1000, ge=10, description="Bootstrap resamples for 95% intervals.")
    seed: int = Field(0, description="Seed of the bootstrap resampling.")
    dtype: str = Field(
        "float32", description="Weights dtype of the local judge (auto: bf16 where fast)."
    )
    device: str = Field(
        "auto", description="Device of the local judge: auto (cuda when available), cpu, cuda:N."
    )
    batch_size: int = Field(
        8, ge=1, description="Local judge: judgements per forward pass (padded together)."
    )
    max_prompt_tokens: int = Field(
        2048, ge=64, description="Local judge: keep at most this many prompt tokens (left-trim)."
    )

    @model_validator(mode="after")
    def _needs_url(self) -> JudgeConfig:
        if self.backend == "openai" and not self.base_url:
            raise ValueError("backend 'openai' needs base_url (e.g. https://api.openai.com/v1)")
        return self
