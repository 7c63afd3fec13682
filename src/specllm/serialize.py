"""LLMTime-style serialisation of a flux series as text, and the prompt/target pair built from it.

After Gruver et al. (2023), "Large Language Models Are Zero-Shot Time Series Forecasters": each value
is rounded to a fixed number of digits in a chosen base, the radix point is dropped, the digits are
separated by a digit separator and the values by a value separator. With base 10, precision 2,
one integer digit and the default separators, 4.56 becomes ``4|5|6`` and [4.56, 0.7] becomes
``4|5|6,0|7|0``.

Hand-written on purpose: LLMTime's reference serializer (github.com/ngruver/llmtime) is not a
package on PyPI, and it rescales each series itself and strips leading zeros, while this project
rescales in the `prepare` stage and needs a fixed-width, strict, invertible format that reports
every clipped value. The format is small enough that a library would add more than it saves.

Every value is written with exactly ``int_digits + precision`` digits (leading zeros kept), so
digits can be split unambiguously even with an empty digit separator. Values are rounded half up
to the nearest bin of width ``base ** -precision``; rounded values outside the representable range
are clipped to it and counted (``Encoded.n_clipped``), negative values are clipped to 0 and counted
when ``signed`` is false (``Encoded.n_negative``); nothing is clipped silently.
"""

from __future__ import annotations

import json
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from specllm.errors import InputError
from specllm.schema import SCHEMA

DIGITS = string.digits + string.ascii_lowercase  # digit alphabet: base 36 at most
BUDGET_FIX = "lower spectrum.n_points, or precision, or raise serialize.max_context_share"
_KEYS = ("base", "precision", "int_digits", "digit_sep", "value_sep", "signed", "prompt",
         "target_decimals", "context_tokens", "max_context_share")


@dataclass(frozen=True)
class SerializerConfig:
    """The `serialize.*` parameters. Build from params with `SerializerConfig.from_params`."""

    base: int = 10
    precision: int = 2
    int_digits: int = 1
    digit_sep: str = "|"
    value_sep: str = ","
    signed: bool = False
    prompt: str = "Galaxy spectrum is rescaled and encoded to an input series:"
    target_decimals: int = 3
    context_tokens: int = 8192
    max_context_share: float = 0.07

    def __post_init__(self) -> None:
        # Each field's own range is params.yaml's (specllm.schema, the one source): the library refuses what
        # `make reproduce` would. What follows needs two fields at once, or the encoder's float64 arithmetic.
        for key in _KEYS:
            if problem := SCHEMA[f"serialize.{key}"](getattr(self, key)):
                raise ValueError(f"serialize.{key} {problem}")
        if self.base ** self.n_digits > 2**53:
            raise ValueError(f"base**(int_digits + precision) = {self.base}**{self.n_digits} exceeds 2**53: "
                             "values could not be rounded exactly in float64; use fewer digits")
        alphabet = set(DIGITS[: self.base]) | set(DIGITS[: self.base].upper()) | {"-"}
        if set(self.digit_sep) & alphabet:
            raise ValueError(f"digit_sep {self.digit_sep!r} contains a base-{self.base} digit or '-'")
        if not self.value_sep:
            raise ValueError("serialize.value_sep must not be empty")
        if not set(self.value_sep) - alphabet - set(self.digit_sep):
            raise ValueError(f"value_sep {self.value_sep!r} needs a character that is neither a base-{self.base} "
                             f"digit, '-', nor part of digit_sep {self.digit_sep!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> SerializerConfig:
        """From a flat params mapping with dotted keys (``serialize.base``, ...), e.g. stage_params("serialize")."""
        return cls(**{k: params[f"serialize.{k}"] for k in _KEYS})

    @property
    def n_digits(self) -> int:
        return self.int_digits + self.precision

    @property
    def bin_width(self) -> float:
        return float(self.base) ** -self.precision

    @property
    def max_value(self) -> float:
        """Largest representable value (base**int_digits - one bin)."""
        return (self.base**self.n_digits - 1) * self.bin_width

    @property
    def min_value(self) -> float:
        return -self.max_value if self.signed else 0.0


@dataclass(frozen=True)
class Encoded:
    """Text of one series and what was clipped to make it fit."""

    text: str
    n_values: int
    n_clipped: int = 0   # |rounded value| above max_value, clipped to +-max_value
    n_negative: int = 0  # negative rounded values clipped to 0 (signed=false only)
    clipped_index: tuple[int, ...] = field(default=(), repr=False)


def _quantize(values: np.ndarray, cfg: SerializerConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer bin numbers (round half up), clipped; and masks of the clipped and the zeroed negatives."""
    scaled = values * float(cfg.base**cfg.precision)
    k = np.floor(scaled + 0.5)
    kmax = cfg.base**cfg.n_digits - 1
    too_big = np.abs(k) > kmax if cfg.signed else k > kmax
    negative = np.zeros_like(too_big) if cfg.signed else k < 0
    k = np.clip(k, -kmax if cfg.signed else 0, kmax)
    return k.astype(np.int64), too_big, negative


def _value_text(k: int, cfg: SerializerConfig) -> str:
    sign = "-" if k < 0 else ""
    k = abs(k)
    digits = []
    for _ in range(cfg.n_digits):
        k, d = divmod(k, cfg.base)
        digits.append(DIGITS[d])
    return sign + cfg.digit_sep.join(reversed(digits))


def encode(values: Iterable[float] | np.ndarray, cfg: SerializerConfig) -> Encoded:
    """One series (1-D) as text, e.g. ``[4.56, 0.7] -> "4|5|6,0|7|0"``; raises ValueError on NaN/inf."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"encode takes one 1-D series, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"value {bad} is {arr[bad]}: only finite values can be serialised")
    k, too_big, negative = _quantize(arr, cfg)
    if cfg.base == 10 and not cfg.digit_sep:  # fast path for the common case
        width = cfg.n_digits
        text = cfg.value_sep.join(f"{v:0{width}d}" if v >= 0 else f"-{-v:0{width}d}" for v in k.tolist())
    else:
        table: dict[int, str] = {}
        parts = []
        for v in k.tolist():
            if v not in table:
                table[v] = _value_text(v, cfg)
            parts.append(table[v])
        text = cfg.value_sep.join(parts)
    return Encoded(text=text, n_values=int(arr.size), n_clipped=int(too_big.sum()), n_negative=int(negative.sum()),
                   clipped_index=tuple(int(i) for i in np.flatnonzero(too_big | negative)))


def decode(text: str, cfg: SerializerConfig) -> np.ndarray:
    """Inverse of `encode`: float64 values at the centre of their bins (k / base**precision, one rounding).

The one decoder of the series format (the report's example figure reads its series back with it).

    A single trailing value separator is accepted (models often emit one). Anything else that
    `encode` cannot have written raises ValueError naming the value, its character offset and
    the offending token.
    """
    if not isinstance(text, str):
        raise ValueError(f"decode takes a str, got {type(text).__name__}")
    if text == "":
        return np.zeros(0, dtype=np.float64)
    tokens = text.split(cfg.value_sep)
    if len(tokens) > 1 and tokens[-1] == "":
        tokens.pop()
    digit_value = {c: i for i, c in enumerate(DIGITS[: cfg.base])}
    out = np.empty(len(tokens), dtype=np.float64)
    offset = 0
    for i, token in enumerate(tokens):
        where = f"value {i} at character {offset}"
        negative = token.startswith("-")
        body = token[1:] if negative else token
        if negative and not cfg.signed:
            raise ValueError(f"{where}: {token!r} has a sign but the serializer is unsigned (serialize.signed=false)")
        digits = body.split(cfg.digit_sep) if cfg.digit_sep else list(body)
        if len(digits) != cfg.n_digits:
            raise ValueError(f"{where}: {token!r} has {len(digits)} digits, expected {cfg.n_digits} "
                             f"(int_digits {cfg.int_digits} + precision {cfg.precision}, digit_sep {cfg.digit_sep!r})")
        k = 0
        for d in digits:
            if d not in digit_value:
                raise ValueError(f"{where}: {token!r} contains {d!r}, which is not a base-{cfg.base} digit")
            k = k * cfg.base + digit_value[d]
        out[i] = (-k if negative else k) / cfg.base ** cfg.precision  # exact integers: correctly rounded
        offset += len(token) + len(cfg.value_sep)
    return out


def tokens_per_value(values: np.ndarray, cfg: SerializerConfig, tokenizer) -> float:
    """Mean tokens one value costs in the series text, value separator included."""
    values = np.asarray(values, dtype=np.float64).ravel()
    text = encode(values, cfg).text + cfg.value_sep
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]) / max(values.size, 1)


# --- tokenizer-aware parts -------------------------------------------------------------------------


def token_counts(texts: Sequence[str], tokenizer) -> np.ndarray:
    """Number of tokens of each text, as the model sees it (no special tokens added: chat-formatted
    text already carries its own)."""
    texts = list(texts)
    if not texts:
        return np.zeros(0, dtype=np.int64)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return np.array([len(x) for x in ids], dtype=np.int64)


def check_budget(counts: Sequence[int] | np.ndarray, context_tokens: int, max_share: float,
                 where: str | Path, names: Sequence[Any] | None = None) -> dict[str, Any]:
    """Raise InputError when any sample needs more than max_share * context_tokens tokens.

    `where` names the file the samples come from; `names` (optional) identifies each sample, e.g. the
    gal_id. Returns the budget figures (limit, largest count, largest share used) when all fit.
    """
    counts = np.asarray(counts, dtype=np.int64)
    limit = max_share * context_tokens
    over = np.flatnonzero(counts > limit)
    if over.size:
        worst = int(over[np.argmax(counts[over])])
        label = f"sample {names[worst]}" if names is not None else f"sample #{worst}"
        raise InputError(
            where, "serialize.max_context_share",
            f"{over.size} of {counts.size} samples need more than {max_share:g} x {context_tokens} = "
            f"{limit:.0f} tokens; the largest, {label}, needs {counts[worst]} "
            f"({counts[worst] / context_tokens:.1%} of the context)",
            BUDGET_FIX)
    largest = int(counts.max()) if counts.size else 0
    return {"limit_tokens": float(limit), "max_tokens": largest, "max_share_used": largest / context_tokens}


def build_example(series_text: str, z: float, cfg: SerializerConfig, tokenizer) -> dict[str, str]:
    """Prompt and target of one spectrum: the user message ``"{prompt} {series}"`` put through the
    tokenizer's chat template when it has one (generation prompt added), else plain text ending in a
    newline; the target is ``"Redshift: {z:.{target_decimals}f}"``. Train on prompt + target."""
    user = f"{cfg.prompt} {series_text}"
    if getattr(tokenizer, "chat_template", None):
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                               tokenize=False, enable_thinking=False)
    else:
        prompt = user + "\n"
    return {"prompt": prompt, "target": f"Redshift: {float(z):.{cfg.target_decimals}f}"}


SERIALIZED_FIELDS = ("gal_id", "z", "prompt", "target")
SERIALIZE_FIX = "rerun the serialize stage (`dvc repro serialize`)"


def read_serialized(path: str | Path) -> list[dict[str, Any]]:
    """The records of data/serialized/{split}.jsonl, checked (gal_id, finite z, non-empty prompt and target).

    The one reader that training, evaluation and the demo share; InputError when missing, empty or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "-", "file not found", SERIALIZE_FIX)
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(path, f"line {number}", f"not valid JSON ({err.msg})", SERIALIZE_FIX) from None
            missing = [f for f in SERIALIZED_FIELDS if f not in rec]
            if missing:
                raise InputError(path, f"line {number}: {', '.join(missing)}", "missing field", SERIALIZE_FIX)
            for key in ("prompt", "target"):
                if not isinstance(rec[key], str) or not rec[key]:
                    raise InputError(path, f"line {number}: {key}", "empty or not text", SERIALIZE_FIX)
            try:
                z = float(rec["z"])
            except (TypeError, ValueError):
                z = float("nan")
            if not np.isfinite(z):
                raise InputError(path, f"line {number}: z", f"not a finite number ({rec['z']!r})", SERIALIZE_FIX)
            records.append(rec)
    if not records:
        raise InputError(path, path.stem, "the split is empty",
                         f"raise data.n_{path.stem} in params.yaml and rerun prepare and serialize")
    return records
