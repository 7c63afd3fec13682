"""When a training diverged on this host: the values downstream of it are checked at the claim level.

A float32 training is a chaotic map: another CPU rounds its matrix products differently (other SIMD
kernels, another thread count), and over a hundred optimizer steps that difference grows until the
trained model gives a few different discrete answers. Measured on the small profile
(tests/conftest.perturbed_env: one thread, AVX2-capped torch/oneDNN/MKL, Haswell OpenBLAS, numpy
without AVX-512; the five stability stages rerun on a copy of the reference run): the stability
warm-up's loss at step 40 was 1.1330 vs 1.1329, at step 80 0.3042 vs 0.3073, at step 110 0.3253 vs
0.3439; the probe then gave a different answer for 37 of its 270 prompts, and 46 of 417 reported
values moved beyond the float tolerance (mean PSS 0.026 -> 0.000, the top label QSO -> GALAXY, ...),
while every verdict of both studies stayed the same and each moved statistic stayed inside the
95% interval the paper prints for it. No float tolerance separates that from a bug: a count over 18
objects moves in steps of 1/18, and a tolerance wide enough for those steps would pass anything.

So verify tells the two apart by their cause, and checks what such a run can reproduce:
  1. cause: a training's loss curve (TRAININGS[...].logs, frozen whole or as a fingerprint) differs
     from the frozen one beyond the model tolerance. Only then is anything relaxed, and only for
     the values downstream of that training (its stages and its report module); on a host whose
     trainings reproduce, every value is held to the float rules;
  2. conclusions: the verdict of every headline claim of both studies (results/verdicts.json) is
     identical to the frozen one;
  3. intervals: every statistic of that training's study that the paper prints with a 95% interval
     (INTERVALS) lies, regenerated, inside the frozen interval.
With all three, a value that moved is "consistent (retrained)": it passes, counted apart from
"identical" and "within tolerance", and `specllm verify --strict` refuses it. Without any one of
them it stays a MISMATCH.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specllm import fingerprint, paths
from specllm.io import read_json

CONSISTENT = "consistent (retrained)"
ANY = "*"  # a row that mixes the studies (the verdict table): relaxed when any training diverged


@dataclass(frozen=True)
class Training:
    name: str
    logs: tuple[str, ...]        # glob patterns of its loss curves, relative to the project root
    stages: re.Pattern[str]      # the stages whose outputs depend on the trained weights
    modules: tuple[str, ...]     # the report modules that draw its tables

    def log_files(self, root: Path) -> list[str]:
        """Its loss curves on disk, in the order of `logs` (the first training's curve is named first)."""
        found = [p.relative_to(root).as_posix() for pattern in self.logs for p in sorted(Path(root).glob(pattern))]
        return list(dict.fromkeys(found))


TRAININGS = (
    # evaluate_base and the data/baseline stages do not use a trained adapter: never relaxed.
    Training("LoRA fine-tuning", (paths.rel(paths.TRAIN_RESULTS / "*" / "loss.csv"),),
             re.compile(r"^(train_|evaluate_(?!base)|retention_|select$|demo$)"),
             ("src/specllm/report/ablation.py",)),
    # The warm-up's adapter is what the probe, the analysis and DPO read; DPO trains on top of it.
    Training("stability warm-up and DPO",
             (paths.rel(paths.STABILITY_FILES["warmup_loss"]), paths.rel(paths.STABILITY_FILES["dpo_loss"])),
             re.compile(r"^stability_(warmup|probe|analyze|dpo|reprobe)$"),
             ("src/specllm/report/stability.py",)),
)
# Modules whose tables mix both studies: relaxed when any training diverged (the verdict labels they
# print are checked exactly, by gate 2).
MIXED_MODULES = ("src/specllm/verdicts.py",)

# (point estimate, 95% CI low, 95% CI high) as the paper prints them, by macro name.
INTERVALS = (
    ("AblationBestScienceRatio", "AblationBestScienceCiLow", "AblationBestScienceCiHigh"),
    ("AblationBestGeneralRatio", "AblationBestGeneralCiLow", "AblationBestGeneralCiHigh"),
    ("AblationBestScienceAboveChance", "AblationBestScienceAboveChanceCiLow", "AblationBestScienceAboveChanceCiHigh"),
    ("AblationBestGeneralAboveChance", "AblationBestGeneralAboveChanceCiLow", "AblationBestGeneralAboveChanceCiHigh"),
    ("StabilityMeanPss", "StabilityPssCiLow", "StabilityPssCiHigh"),
    ("StabilityAccuracy", "StabilityAccCiLow", "StabilityAccCiHigh"),
    ("StabilityAfterPssDiff", "StabilityAfterPssCiLow", "StabilityAfterPssCiHigh"),
)
# A bootstrap bound is itself a float of a model stage: the point may sit on it within this slack.
INTERVAL_SLACK = 1e-9


def group_of(stage: str | None, module: str | None = None) -> str | None:
    """The training a value depends on (its name), ANY for a mixed table, None when it depends on none."""
    if module in MIXED_MODULES:
        return ANY
    for t in TRAININGS:
        if (stage and t.stages.match(stage)) or (module and module in t.modules):
            return t.name
    return None


def training_logs(root: Path) -> dict[str, Any]:
    """{loss curve path: fingerprint} of every training (frozen by `specllm freeze`)."""
    return {f: fingerprint.fingerprint(Path(root) / f) for t in TRAININGS for f in t.log_files(Path(root))}


def verdict_labels(root: Path) -> dict[str, str]:
    """{claim key: verdict} from results/verdicts.json; {} before the verdicts stage ran."""
    file = paths.at(root, paths.VERDICTS)
    if not file.is_file():
        return {}
    return {row["key"]: row["verdict"] for row in read_json(file, "run `dvc repro verdicts`", kind=None)["rows"]}


def diverged(frozen_logs: Mapping[str, Any], root: Path, rtol: float, atol: float) -> dict[str, str]:
    """{training name: why} for each training whose loss curve differs from the frozen one beyond the
    tolerance (a curve gone or new counts as diverged: the training ran differently)."""
    now = training_logs(root)
    out: dict[str, str] = {}
    for t in TRAININGS:
        files = t.log_files(Path(root))
        files += [f for f in frozen_logs if f not in files and any(Path(f).match(p) for p in t.logs)]
        for f in files:
            a, b = frozen_logs.get(f), now.get(f)
            if a is None or b is None:
                out[t.name] = f"{f}: {'not frozen' if a is None else 'not generated'}"
                break
            ok, _, why = fingerprint.close_file(a, b, rtol, atol)
            if not ok:
                out[t.name] = f"{f}: {why}"
                break
    return out


def interval_checks(frozen: Mapping[str, Mapping[str, Any]], now: Mapping[str, Mapping[str, Any]],
                    group: Mapping[str, str | None]) -> list[tuple[str, str | None, bool, str]]:
    """[(point macro, its training, inside?, text)]: the regenerated point against the frozen interval."""
    out = []
    for point, lo, hi in INTERVALS:
        if not all(n in frozen for n in (point, lo, hi)) or point not in now:
            continue
        a, b, x = (_number(v) for v in (frozen[lo]["value"], frozen[hi]["value"], now[point]["value"]))
        if a is None or b is None:  # no interval frozen (e.g. "n/a": the base model at chance)
            continue
        if x is None and now[point]["value"] == frozen[point]["value"]:
            # Undefined on both runs (a ratio over a base model at chance, printed "n/a"): the point did not
            # move, so it is not checked against the bootstrap's interval (which exists: resamples can be
            # off chance). Found when a changed smoke grid retrained a run and this failed verify.
            out.append((point, group.get(point), True, f"{now[point]['value']} as frozen [{a:.4g}, {b:.4g}]"))
            continue
        inside = x is not None and a - INTERVAL_SLACK <= x <= b + INTERVAL_SLACK
        shown = f"{x:.4g}" if x is not None else str(now[point]["value"])
        out.append((point, group.get(point), inside, f"{shown} {'in' if inside else 'outside'} [{a:.4g}, {b:.4g}]"))
    return out


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
