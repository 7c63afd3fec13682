"""The settings of one training run: the shared `train.*` parameters and the run's own overrides.

A run is the default configuration with at most a few values changed on the command line
(`--lr`, `--rank`, `--epochs`); DVC's `foreach` stages put those into the stage's `cmd`, so the
ablation lists themselves are never a dependency of any stage. Everything is checked here, and a
bad value raises InputError naming where it came from (params.yaml key or command-line flag).

Light on purpose (no torch import): the CLI validates before loading anything heavy.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from specllm.errors import InputError
from specllm.schema import SCHEMA

# params.yaml keys of the `train:` section, in the order they are documented there.
KEYS = ("lr", "rank", "alpha", "dropout", "target_modules", "epochs", "batch_size", "grad_accum",
        "lr_schedule", "warmup_ratio", "weight_decay", "max_grad_norm", "checkpoint_every", "group_by_length_mult")
RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]*$")
# Settings that change nothing numerically: a checkpoint written under other values still resumes.
_NOT_NUMERIC = ("run", "checkpoint_every")


@dataclass(frozen=True)
class TrainSettings:
    """Every setting of one run. Defaults are the paper's (rank 8, alpha 16, dropout 0.05, q/v, lr 1e-4, 2 epochs).

    `sources` maps a field to where its value came from (e.g. "--lr" or "train.lr"), for messages.
    """

    run: str = "default"
    seed: int = 0
    lr: float = 1.0e-4
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")
    epochs: int = 2
    batch_size: int = 8
    grad_accum: int = 1
    lr_schedule: str = "linear"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    checkpoint_every: int = 20
    group_by_length_mult: int = 50
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    params_file: str = field(default="params.yaml", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        self.validate()
        # plain Python types from here on (YAML loaders give subclasses such as ruamel's ScalarFloat,
        # which would end up pickled in the optimizer state and refuse to load with weights_only=True)
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                continue
            if isinstance(v, float):
                object.__setattr__(self, f.name, float(v))
            elif isinstance(v, int):
                object.__setattr__(self, f.name, int(v))
            elif isinstance(v, str):
                object.__setattr__(self, f.name, str(v))
        object.__setattr__(self, "target_modules", tuple(str(m) for m in self.target_modules))

    # -- construction ------------------------------------------------------------------------------

    @classmethod
    def from_params(cls, params: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
                    run: str = "default", params_file: str | Path = "params.yaml") -> TrainSettings:
        """From flat params (`seed`, `train.*`, e.g. config.stage_params(...)) and command-line overrides
        ({"lr": 1e-5}); overrides win. Raises InputError for any bad value."""
        values: dict[str, Any] = {"run": run, "seed": params["seed"]}
        sources: dict[str, str] = {"run": "--run", "seed": "seed"}
        for key in KEYS:
            values[key] = params[f"train.{key}"]
            sources[key] = f"train.{key}"
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key not in values:
                raise ValueError(f"unknown override {key!r}")
            values[key] = value
            sources[key] = f"--{key.replace('_', '-')}"
        if isinstance(values["target_modules"], str):
            values["target_modules"] = [values["target_modules"]]
        return cls(**values, sources=sources, params_file=str(params_file))

    def where(self, name: str) -> tuple[str, str]:
        """(file, field) naming where a setting came from: params.yaml and its key, or the command line."""
        source = self.sources.get(name, f"train.{name}")
        return ("command line", source) if source.startswith("--") else (self.params_file, source)

    def _bad(self, name: str, problem: str) -> InputError:
        file, fieldname = self.where(name)
        fix = (f"pass a valid {fieldname}" if file == "command line"
               else f"correct {fieldname} in {Path(file).name}")
        return InputError(file, fieldname, problem, fix)

    # -- checks --------------------------------------------------------------------------------------

    def validate(self) -> None:
        """The `seed` and `train.*` checks of params.yaml's schema (specllm.schema), applied to the run's
        values wherever they came from, so a command-line override meets the same bounds as params.yaml."""
        if not isinstance(self.run, str) or not RUN_NAME.match(self.run):
            raise self._bad("run", f"run name {self.run!r} must start with a letter or digit and use only "
                                   "letters, digits and . _ = + - (it names folders)")
        for name in ("seed", *KEYS):
            value = getattr(self, name)
            if name == "target_modules":
                value = list(value)
            if problem := SCHEMA["seed" if name == "seed" else f"train.{name}"](value):
                raise self._bad(name, problem)
        if self.batch_size % self.grad_accum:
            raise self._bad("grad_accum", f"batch_size {self.batch_size} is not divisible by grad_accum {self.grad_accum}")

    def check_world(self, world_size: int) -> int:
        """Examples per micro-batch on each process; InputError when the batch does not split evenly."""
        parts = world_size * self.grad_accum
        if self.batch_size % parts:
            raise self._bad("batch_size", f"batch_size {self.batch_size} (spectra per optimizer step, all processes "
                                          f"together) must be divisible by processes x grad_accum = "
                                          f"{world_size} x {self.grad_accum}")
        return self.batch_size // parts

    # -- records ---------------------------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings (for train.json)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("sources", "params_file")}
        d["target_modules"] = list(self.target_modules)
        return d

    def fingerprint(self, *extra: Any) -> str:
        """sha256 of every numerically relevant setting (plus `extra`, e.g. data and model hashes):
        a checkpoint resumes only into a run with the same fingerprint."""
        d = {k: v for k, v in self.as_dict().items() if k not in _NOT_NUMERIC}
        blob = json.dumps([d, *extra], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

