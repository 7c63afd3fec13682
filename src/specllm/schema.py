"""The params.yaml schema: one pydantic model per section, every key with its type and allowed range.

This is the only place a parameter's type and bounds are written. From it come
  - config.SCHEMA: {dotted.key: check(value) -> problem or None}, what `config.load` (params.yaml),
    `config.profile_overrides` (profiles/*.yaml) and the provenance stage check values with;
  - train.settings.TrainSettings' checks of the `train.*` values and their command-line overrides;
  - tests/test_config.py's documentation check: every key here has a comment in params.yaml, and
    params.yaml has no key that is not here.
Relations between keys (z_min < z_max, an ablation list must not repeat the default) stay in
config.validate; a module that uses a value may check more (the serializer's alphabet, the model's
linear layers).

Values are validated, never converted (strict): config.load returns params.yaml's values as written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from specllm.errors import clip

PROFILES = ("smoke", "small", "open", "paper")


@dataclass(frozen=True)
class Allowed:
    """What a key accepts, in words, for error messages ("an integer >= 1")."""

    text: str


def _range(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f" in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    if lo is not None:
        return f" {'>' if lo_open else '>='} {lo:g}"
    if hi is not None:
        return f" {'<' if hi_open else '<='} {hi:g}"
    return ""


def Int(ge: int | None = None, le: int | None = None) -> Any:  # capitalised: used as a type
    return Annotated[int, Field(strict=True, ge=ge, le=le), Allowed("an integer" + _range(ge, le, False, False))]


def Num(ge: float | None = None, le: float | None = None, *, gt: float | None = None,
        lt: float | None = None) -> Any:
    text = "a number" + _range(gt if gt is not None else ge, lt if lt is not None else le, gt is not None, lt is not None)
    return Annotated[float, Field(strict=True, ge=ge, le=le, gt=gt, lt=lt), Allowed(text)]


def Choice(*options: str) -> Any:
    return Annotated[Literal[options], Allowed(f"one of {', '.join(options)}")]


Str = Annotated[str, Field(strict=True), Allowed("a string")]
Bool = Annotated[bool, Field(strict=True), Allowed("true or false")]
PosInt = Int(1)


def _distinct(items: list) -> list:
    if len({repr(x) for x in items}) != len(items):
        raise ValueError("repeats an item")
    return items


def ListOf(item: Any, min_len: int = 1) -> Any:
    what = next(m.text for m in get_args(item)[1:] if isinstance(m, Allowed))
    return Annotated[list[item], Field(strict=True, min_length=min_len), AfterValidator(_distinct),
                     Allowed(f"a list of {f'at least {min_len} ' if min_len else ''}distinct items, each {what}")]


def Pattern(regex: str, what: str, allow_empty: bool = False) -> Any:
    """A string matching `regex` in full. For values that reach LaTeX verbatim (inside \\href):
    an allowlist of characters TeX treats as text, so `\\input{/etc/passwd}` or `\\write18` are refused."""
    compiled = re.compile(regex)  # Python's re: the patterns use look-arounds

    def check(v: str) -> str:
        if (allow_empty and v == "") or compiled.fullmatch(v):
            return v
        raise ValueError("no match")

    return Annotated[str, Field(strict=True), AfterValidator(check), Allowed(what)]


# https://host[:port]/path with path segments of letters, digits, '.', '_', '-' (a GitHub/GitLab URL)
REPO_URL = r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._-]+)*/?"
# a git branch, tag or commit: git check-ref-format's rules on an allowlist of characters
REPO_REF = r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]+(?<![/.])(?<!\.lock)"

# The bounds of learning rates and dropouts, one choice for every optimizer and adapter (train, the
# ablation, the stability warm-up, DPO): a learning rate in (0, 1] (AdamW above 1 is a typo, not a
# setting; the paper's are 1e-4 to 3e-3), a dropout probability in [0, 1) (1 would zero the LoRA branch's
# input; every value below is a valid probability, so no narrower cap).
LR = Num(gt=0.0, le=1.0)
DROPOUT = Num(0.0, lt=1.0)


class Section(BaseModel):
    # defer_build: the models are read for their fields; only the per-key checks validate (built lazily)
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class Raw(Section):
    seed: Int(0)
    z_min: Num(0.0)
    z_max: Num(gt=0.0, le=7.0)
    i_max: Num(10.0, 25.0)
    loglam_min: Num(3.5, 4.0)
    loglam_max: Num(3.5, 4.1)
    loglam_step: Num(1e-5, 1e-2)
    snr_r: Num(gt=0.0)
    n_stars: Int(0)
    n_qso: Int(0)


class Data(Section):
    source: Choice("embedded", "dr16")
    n_train: PosInt
    n_val: PosInt
    n_test: PosInt
    z_bins: PosInt


class Spectrum(Section):
    wave_min: Num(3000.0, 10000.0)
    wave_max: Num(3000.0, 11000.0)
    n_points: Int(2)
    rescale_quantile: Num(gt=0.0, le=1.0)
    rescale_to: Num(gt=0.0)


class Serialize(Section):
    base: Int(2, 36)
    precision: Int(0, 8)
    int_digits: Int(1, 8)
    digit_sep: Str
    value_sep: Str
    signed: Bool
    prompt: Str
    target_decimals: Int(1, 6)
    context_tokens: PosInt
    max_context_share: Num(gt=0.0, le=1.0)


class Model(Section):
    source: Choice("tiny", "gguf", "hub")
    name: Str
    hub_id: Str
    revision: Str
    tiny_hidden: PosInt
    tiny_layers: PosInt
    tiny_heads: PosInt


class Baseline(Section):
    n_neighbors: PosInt
    n_estimators: PosInt
    max_depth: Int(0)


class Train(Section):
    lr: LR
    rank: PosInt
    alpha: Num(gt=0.0)
    dropout: DROPOUT
    target_modules: ListOf(Str)  # names are checked against the model's linear layers by the stage
    epochs: PosInt
    batch_size: PosInt
    grad_accum: PosInt
    lr_schedule: Choice("linear", "cosine", "constant")
    warmup_ratio: Num(0.0, 1.0)
    weight_decay: Num(0.0)
    max_grad_norm: Num(0.0)
    checkpoint_every: Int(0)
    group_by_length_mult: PosInt


class Ablation(Section):
    lr: ListOf(LR, min_len=0)
    rank: ListOf(PosInt, min_len=0)
    epochs: ListOf(PosInt, min_len=0)


class Evaluate(Section):
    batch_size: PosInt
    max_new_tokens: PosInt
    constrained: Bool


class Retention(Section):
    probes: Str
    batch_size: PosInt
    n_boot: PosInt
    max_items: Int(0)


class Select(Section):
    max_unparsed_frac: Num(0.0, 1.0)
    n_boot: PosInt


class Demo(Section):
    index: Int(0)
    question: Str
    max_new_tokens: PosInt


class Catalogue(Section):
    source: Choice("embedded", "sdss17")


class Stability(Section):
    n_per_class: PosInt
    eval_share: Num(gt=0.0, le=1.0)
    n_orders: Int(1, 3_628_800)  # 10 features have 10! distinct orders
    decimals: Int(0, 8)
    batch_size: PosInt
    decode_prompts: Int(0)
    max_new_tokens: PosInt
    sigma: Num(gt=0.0)
    max_clusters: PosInt
    z_plausible: Num(0.0)
    pair_orders: PosInt
    n_boot: PosInt
    sigma_scan: ListOf(Num(gt=0.0))
    warmup_per_class: Int(0)  # 0 = no supervised warm-up
    warmup_orders: PosInt
    warmup_epochs: PosInt
    warmup_lr: LR
    warmup_batch_size: PosInt
    warmup_target_modules: ListOf(Str)  # checked against the model's linear layers by stability_warmup


class Dpo(Section):
    beta: Num(gt=0.0)
    lr: LR
    epochs: PosInt
    batch_size: PosInt
    rank: PosInt
    alpha: Num(gt=0.0)
    dropout: DROPOUT
    target_modules: ListOf(Str)  # checked against the model's linear layers by stability_dpo


class Cost(Section):
    usd_per_gpu_hour: Num(0.0)


class Provenance(Section):
    repo_url: Pattern(REPO_URL, "\"\" or an https URL of letters, digits and . _ - / "
                      "(https://github.com/<org>/specllm)", allow_empty=True)
    repo_ref: Pattern(REPO_REF, "a git branch, tag or commit name (letters, digits, . _ - /)")


class Params(Section):
    """params.yaml, section by section in its order (profiles/*.yaml set some of the same keys)."""

    profile: Choice(*PROFILES)
    seed: Int(0)
    raw: Raw
    data: Data
    spectrum: Spectrum
    serialize: Serialize
    model: Model
    baseline: Baseline
    train: Train
    ablation: Ablation
    evaluate: Evaluate
    retention: Retention
    select: Select
    demo: Demo
    catalogue: Catalogue
    stability: Stability
    dpo: Dpo
    cost: Cost
    provenance: Provenance


Check = Callable[[Any], "str | None"]


def _checker(annotation: Any) -> Check:
    """check(value) -> None when the value is allowed, else "must be <allowed>, got <value>"."""
    allowed = next(m.text for m in get_args(annotation)[1:] if isinstance(m, Allowed))
    adapter: list[TypeAdapter] = []  # built on first use: importing the schema stays cheap

    def check(value: Any) -> str | None:
        if not adapter:
            adapter.append(TypeAdapter(annotation))
        try:
            adapter[0].validate_python(value)
        except ValidationError:
            return f"must be {allowed}, got {clip(value)}"
        return None

    return check


def flat_schema(model: type[BaseModel] = Params, prefix: str = "") -> dict[str, Check]:
    """{dotted.key: check} for every leaf of the model tree, in declaration order."""
    checks: dict[str, Check] = {}
    for name, info in model.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            checks.update(flat_schema(ann, f"{prefix}{name}."))
        else:
            full = Annotated[(ann, *info.metadata)] if get_origin(ann) is not Annotated else ann
            checks[f"{prefix}{name}"] = _checker(full)
    return checks


SCHEMA: dict[str, Check] = flat_schema()
