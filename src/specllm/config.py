"""params.yaml: load, validate, switch profiles, and give each stage only the keys it declares.

The schema below is the contract for params.yaml: every key with its type and allowed range.
A stage never reads params.yaml directly; it calls stage_params("name"), which returns only the
keys that dvc.yaml lists for that stage. Reading an undeclared key fails loudly, so the DVC
dependency graph cannot silently miss a parameter (and a change to one key reruns exactly the
stages that read it).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from specllm import paths
from specllm.errors import InputError, clip

PROFILES = ("smoke", "small", "open", "paper")


def _choice(*options: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _num(lo: float | None = None, hi: float | None = None, *, integer: bool = False, lo_open=False):
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)):
            return f"must be {'an integer' if integer else 'a number'}, got {v!r}"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}, got {v}"
        if hi is not None and v > hi:
            return f"must be <= {hi}, got {v}"
        return None

    return check


def _type(t: type) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        ok = isinstance(v, bool) if t is bool else isinstance(v, t) and not isinstance(v, bool)
        return None if ok else f"must be {t.__name__}, got {v!r}"

    return check


def _list_of(check: Callable[[Any], str | None], min_len: int = 1) -> Callable[[Any], str | None]:
    def run(v: Any) -> str | None:
        if not isinstance(v, list) or len(v) < min_len:
            return f"must be a list of at least {min_len} item(s), got {v!r}"
        for item in v:
            if problem := check(item):
                return f"item {item!r}: {problem}"
        if len({repr(x) for x in v}) != len(v):
            return f"must not repeat an item, got {list(v)!r}"
        return None

    return run


def _pattern(regex: str, what: str, allow_empty: bool = False) -> Callable[[Any], str | None]:
    """A string matching `regex` in full. For values that reach LaTeX verbatim (inside \\href):
    an allowlist of characters TeX treats as text, so `\\input{/etc/passwd}` or `\\write18` are refused."""
    compiled = re.compile(regex)

    def check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"must be a string, got {clip(v)}"
        if (allow_empty and v == "") or compiled.fullmatch(v):
            return None
        return f"must be {what}, got {clip(v)}"

    return check


_pos_int = _num(1, integer=True)
# https://host[:port]/path with path segments of letters, digits, '.', '_', '-' (a GitHub/GitLab URL)
REPO_URL = r"https://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._-]+)*/?"
# a git branch, tag or commit: git check-ref-format's rules on an allowlist of characters
REPO_REF = r"(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/-]+(?<![/.])(?<!\.lock)"
SCHEMA: dict[str, Callable[[Any], str | None]] = {
    "profile": _choice(*PROFILES),
    "seed": _num(0, integer=True),
    "raw.seed": _num(0, integer=True),
    "raw.z_min": _num(0.0),
    "raw.z_max": _num(0.0, 7.0, lo_open=True),
    "raw.i_max": _num(10.0, 25.0),
    "raw.loglam_min": _num(3.5, 4.0),
    "raw.loglam_max": _num(3.5, 4.1),
    "raw.loglam_step": _num(1e-5, 1e-2),
    "raw.snr_r": _num(0.0, lo_open=True),
    "raw.n_stars": _num(0, integer=True),
    "raw.n_qso": _num(0, integer=True),
    "data.source": _choice("embedded", "dr16"),
    "data.n_train": _pos_int,
    "data.n_val": _pos_int,
    "data.n_test": _pos_int,
    "data.z_bins": _pos_int,
    "spectrum.wave_min": _num(3000.0, 10000.0),
    "spectrum.wave_max": _num(3000.0, 11000.0),
    "spectrum.n_points": _num(2, integer=True),
    "spectrum.rescale_quantile": _num(0.0, 1.0, lo_open=True),
    "spectrum.rescale_to": _num(0.0, lo_open=True),
    "serialize.base": _num(2, 36, integer=True),
    "serialize.precision": _num(0, 8, integer=True),
    "serialize.int_digits": _num(1, 8, integer=True),
    "serialize.digit_sep": _type(str),
    "serialize.value_sep": _type(str),
    "serialize.signed": _type(bool),
    "serialize.prompt": _type(str),
    "serialize.target_decimals": _num(1, 6, integer=True),
    "serialize.context_tokens": _pos_int,
    "serialize.max_context_share": _num(0.0, 1.0, lo_open=True),
    "model.source": _choice("tiny", "gguf", "hub"),
    "model.name": _type(str),
    "model.hub_id": _type(str),
    "model.revision": _type(str),
    "model.tiny_hidden": _pos_int,
    "model.tiny_layers": _pos_int,
    "model.tiny_heads": _pos_int,
    "baseline.n_neighbors": _pos_int,
    "baseline.n_estimators": _pos_int,
    "baseline.max_depth": _num(0, integer=True),
    "train.lr": _num(0.0, 1.0, lo_open=True),
    "train.rank": _pos_int,
    "train.alpha": _num(0.0, lo_open=True),
    "train.dropout": _num(0.0, 0.95),
    "train.target_modules": _list_of(_type(str)),  # names are checked against the model's linear layers by the stage
    "train.epochs": _pos_int,
    "train.batch_size": _pos_int,
    "train.grad_accum": _pos_int,
    "train.lr_schedule": _choice("linear", "cosine", "constant"),
    "train.warmup_ratio": _num(0.0, 1.0),
    "train.weight_decay": _num(0.0),
    "train.max_grad_norm": _num(0.0),
    "train.checkpoint_every": _num(0, integer=True),
    "train.group_by_length_mult": _pos_int,
    "ablation.lr": _list_of(_num(0.0, 1.0, lo_open=True), min_len=0),
    "ablation.rank": _list_of(_pos_int, min_len=0),
    "ablation.epochs": _list_of(_pos_int, min_len=0),
    "evaluate.batch_size": _pos_int,
    "evaluate.max_new_tokens": _pos_int,
    "evaluate.constrained": _type(bool),
    "retention.probes": _type(str),
    "retention.batch_size": _pos_int,
    "retention.n_boot": _pos_int,
    "retention.max_items": _num(0, integer=True),
    "select.max_unparsed_frac": _num(0.0, 1.0),
    "select.n_boot": _pos_int,
    "demo.index": _num(0, integer=True),
    "demo.question": _type(str),
    "demo.max_new_tokens": _pos_int,
    "catalogue.source": _choice("embedded", "sdss17"),
    "stability.n_per_class": _pos_int,
    "stability.eval_share": _num(0.0, 1.0, lo_open=True),
    "stability.n_orders": _num(1, 3_628_800, integer=True),  # 10 features have 10! distinct orders
    "stability.decimals": _num(0, 8, integer=True),
    "stability.batch_size": _pos_int,
    "stability.decode_prompts": _num(0, integer=True),
    "stability.max_new_tokens": _pos_int,
    "stability.sigma": _num(0.0, lo_open=True),
    "stability.max_clusters": _pos_int,
    "stability.z_plausible": _num(0.0),
    "stability.pair_orders": _pos_int,
    "stability.n_boot": _pos_int,
    "stability.warmup_per_class": _num(0, integer=True),  # 0 = no supervised warm-up
    "stability.warmup_epochs": _pos_int,
    "stability.warmup_lr": _num(0.0, 1.0, lo_open=True),
    "stability.warmup_batch_size": _pos_int,
    "stability.sigma_scan": _list_of(_num(0.0, lo_open=True)),
    "dpo.beta": _num(0.0, lo_open=True),
    "dpo.lr": _num(0.0, 1.0, lo_open=True),
    "dpo.epochs": _pos_int,
    "dpo.batch_size": _pos_int,
    "dpo.rank": _pos_int,
    "dpo.alpha": _num(0.0, lo_open=True),
    "dpo.dropout": _num(0.0, 0.95),
    "dpo.target_modules": _list_of(_type(str)),  # checked against the model's linear layers by stability_dpo
    "cost.usd_per_gpu_hour": _num(0.0),
    "provenance.repo_url": _pattern(REPO_URL, "\"\" or an https URL of letters, digits and . _ - / "
                                    "(https://github.com/<org>/specllm)", allow_empty=True),
    "provenance.repo_ref": _pattern(REPO_REF, "a git branch, tag or commit name (letters, digits, . _ - /)"),
}


def _yaml() -> YAML:
    y = YAML()  # round-trip mode keeps comments and key order when a profile is applied
    y.preserve_quotes = True
    y.width = 120
    return y


def flatten(tree: Mapping, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _unknown_key_error(file: Path, key: str) -> InputError:
    near = difflib.get_close_matches(key, SCHEMA, n=1)
    hint = f"did you mean '{near[0]}'?" if near else "see params.yaml for the documented keys"
    return InputError(file, key, "unknown parameter key", f"{hint} (remove or rename it)")


def validate(flat: Mapping[str, Any], file: Path) -> None:
    for key in flat:
        if key not in SCHEMA:
            raise _unknown_key_error(file, key)
    for key, check in SCHEMA.items():
        if key not in flat:
            raise InputError(file, key, "missing parameter", f"add '{key}' (see the documented params.yaml in git)")
        if problem := check(flat[key]):
            raise InputError(file, key, problem, "correct the value in params.yaml")
    for lo, hi in (("raw.z_min", "raw.z_max"), ("raw.loglam_min", "raw.loglam_max"), ("spectrum.wave_min", "spectrum.wave_max")):
        if flat[lo] >= flat[hi]:
            raise InputError(file, hi, f"must be larger than {lo} ({flat[lo]}), got {flat[hi]}", "correct the range in params.yaml")
    for axis in ("lr", "rank", "epochs"):  # the default run is train_default; an ablation must not repeat it
        if flat[f"train.{axis}"] in flat[f"ablation.{axis}"]:
            raise InputError(file, f"ablation.{axis}", f"repeats the default train.{axis} = {flat[f'train.{axis}']}",
                             "list only values other than the default (train_default already runs it)")
    if flat["model.source"] == "hub" and not flat["model.hub_id"]:
        raise InputError(file, "model.hub_id", "empty while model.source is hub", "give a hub id or a local folder")


def load(file: Path | None = None) -> dict[str, Any]:
    """All parameters as a flat {dotted.key: value} dict, validated."""
    file = Path(file or paths.PARAMS)
    if not file.is_file():
        raise InputError(file, "-", "parameter file not found", "run from the project root, or restore params.yaml from git")
    try:
        tree = _yaml().load(file.read_text())
    except Exception as err:  # ruamel raises several parser error types
        raise InputError(file, "-", f"not valid YAML ({err})", "fix the syntax at the line named above") from None
    if not isinstance(tree, Mapping):
        raise InputError(file, "-", "top level is not a mapping", "restore params.yaml from git")
    flat = flatten(tree)
    validate(flat, file)
    return flat


def declared_params(stage: str, dvc_yaml: Path | None = None) -> list[str]:
    """The params keys dvc.yaml lists for a stage (foreach/matrix stages by their base name)."""
    dvc_yaml = Path(dvc_yaml or paths.DVC_YAML)
    stages = YAML(typ="safe").load(dvc_yaml.read_text())["stages"]
    base = stage.split("@")[0]
    if base not in stages:
        raise InputError(dvc_yaml, f"stages.{base}", "no such stage", f"one of: {', '.join(stages)}")
    keys: list[str] = []
    spec = stages[base].get("do", stages[base])
    for entry in spec.get("params", []):
        # An entry is a key of params.yaml, or {other_file.yaml: [keys]}.
        keys.extend([entry] if isinstance(entry, str) else [k for v in entry.values() for k in v])
    return keys


class StageParams(Mapping):
    """Read-only view of the keys a stage declared; reading any other key is a bug in dvc.yaml."""

    def __init__(self, stage: str, values: Mapping[str, Any], declared: list[str]):
        self.stage = stage
        self._values = {
            k: v for k, v in values.items() if any(k == d or k.startswith(d + ".") for d in declared)
        }

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise KeyError(f"stage '{self.stage}' reads params key '{key}' but dvc.yaml does not list it "
                           f"under the stage's params: add it there so DVC reruns the stage when it changes")
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def stage_params(stage: str, params_file: Path | None = None, dvc_yaml: Path | None = None) -> StageParams:
    return StageParams(stage, load(params_file), declared_params(stage, dvc_yaml))


# Keys a profile never sets: which catalogue the stability study reads is the user's choice (made by
# importing one), not a sizing choice, so switching profiles must keep it (it once reset it silently).
USER_CHOICES = ("catalogue.source",)


def profile_overrides(name: str, profiles_dir: Path | None = None) -> dict[str, Any]:
    profiles_dir = Path(profiles_dir or paths.PROFILES)
    file = profiles_dir / f"{name}.yaml"
    if name not in PROFILES or not file.is_file():
        raise InputError(file, "profile", f"unknown profile '{name}'", f"use one of: {', '.join(PROFILES)}")
    overrides = dict(YAML(typ="safe").load(file.read_text()))
    for key in overrides:
        if key not in SCHEMA:
            raise _unknown_key_error(file, key)
        if key in USER_CHOICES:
            raise InputError(file, key, "a profile must not set this key: it is the user's choice and a profile "
                             "switch would silently change it", f"remove {key} from {file.name}; set it in params.yaml")
    return overrides


def _flow(value: Any) -> Any:
    """A list as a new flow-style sequence (without the profile file's comments); scalars unchanged."""
    if isinstance(value, list):
        seq = CommentedSeq(list(value))
        seq.fa.set_flow_style()
        return seq
    return value


def apply_profile(name: str, params_file: Path | None = None, profiles_dir: Path | None = None) -> list[str]:
    """Rewrite the profile's keys in params.yaml in place (comments kept); return the keys that changed."""
    params_file = Path(params_file or paths.PARAMS)
    profile_overrides(name, profiles_dir)  # checks the name and every key
    y = _yaml()
    # Values as the profile spells them (1.0e-3 stays 1.0e-3, a flow list stays one), so switching
    # profiles and back leaves params.yaml byte-identical; comments stay in the profile file.
    styled = y.load((Path(profiles_dir or paths.PROFILES) / f"{name}.yaml").read_text())
    overrides = {k: _flow(v) for k, v in styled.items()}
    tree = y.load(params_file.read_text())
    changed = []
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = tree
        for part in parents:
            node = node[part]
        if node.get(leaf) != value:
            node[leaf] = value
            changed.append(key)
    validate(flatten(tree), params_file)
    if changed:
        with params_file.open("w") as fh:
            y.dump(tree, fh)
    return changed
