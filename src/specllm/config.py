"""params.yaml: load, validate, switch profiles, and give each stage only the keys it declares.

The schema (specllm.schema, a pydantic model) is the contract for params.yaml: every key with its type
and allowed range; profiles/*.yaml set keys of the same schema and are checked against it.
A stage never reads params.yaml directly; it calls stage_params("name"), which returns only the
keys that dvc.yaml lists for that stage. Reading an undeclared key fails loudly, so the DVC
dependency graph cannot silently miss a parameter (and a change to one key reruns exactly the
stages that read it).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq

from specllm import paths, schema
from specllm.errors import InputError
from specllm.schema import PROFILES

# The schema (every key, its type and allowed range) is specllm.schema's pydantic model of params.yaml;
# SCHEMA is its flat view, {dotted.key: check(value) -> problem or None}.
SCHEMA = schema.SCHEMA


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
        if problem := SCHEMA[key](overrides[key]):
            raise InputError(file, key, problem, f"correct the value in {file.name}")
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
