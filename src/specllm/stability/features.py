"""Objects, their ten feature lines, and the feature orders every object is shown in.

Features (canonical order, index 0..9): the five ugriz magnitudes, the four colours u-g, g-r,
r-i, i-z, and the redshift. Each is one natural-language line, e.g. ``u-band magnitude: 18.911``,
``u-g colour: 1.084``, ``redshift: 0.0827``.

Orders are permutations of the ten indices, the same for every object:
  identity        u g r i z, u-g g-r r-i i-z, redshift
  reverse         the identity backwards
  mags_first      magnitudes, redshift, colours (magnitudes then colours then redshift is the identity)
  colours_first   colours, magnitudes, redshift
  redshift_first  redshift, magnitudes, colours
  random_<k>      seeded random permutations, each distinct from every earlier order,
                  until there are n_orders in all (n_orders < 5 keeps the first n of the list above)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from specllm.errors import InputError
from specllm.vocab import BANDS, CLASSES  # noqa: F401  (CLASSES: a label's index is its position)

COLOURS = (("u", "g"), ("g", "r"), ("r", "i"), ("i", "z"))
FEATURES = (*BANDS, *(f"{a}-{b}" for a, b in COLOURS), "redshift")
N_FEATURES = len(FEATURES)
MAX_ORDERS = math.factorial(N_FEATURES)  # 10! = 3,628,800 distinct orders
MAGS, COLS, Z = tuple(range(5)), tuple(range(5, 9)), (9,)
NAMED_ORDERS = (
    ("identity", (*MAGS, *COLS, *Z)),
    ("reverse", tuple(reversed((*MAGS, *COLS, *Z)))),
    ("mags_first", (*MAGS, *Z, *COLS)),
    ("colours_first", (*COLS, *MAGS, *Z)),
    ("redshift_first", (*Z, *MAGS, *COLS)),
)
REQUIRED = ("obj_id", "class", *BANDS, "redshift")


def check_catalogue(frame: pd.DataFrame, file: str | Path) -> pd.DataFrame:
    """The catalogue with its required columns checked; InputError names the file, field and fix.

    A missing column, a missing/non-finite band or redshift of any object, or an unknown class is an error
    (the embedded builder and `specllm data import-sdss17` never write such rows)."""
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise InputError(file, ", ".join(missing), "column missing from the catalogue",
                         "use data/raw/catalogue.csv (make data) or `specllm data import-sdss17 PATH`")
    for col in (*BANDS, "redshift"):
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            obj = frame["obj_id"].iloc[int(np.flatnonzero(bad)[0])]
            what = "band" if col in BANDS else "value"
            raise InputError(file, f"{col} (obj_id {obj})",
                             f"missing or non-finite {what} for {int(bad.sum())} object(s), first {obj}",
                             "drop or complete these rows (every object needs u, g, r, i, z and redshift)")
    unknown = sorted(set(frame["class"].astype(str)) - set(CLASSES))
    if unknown:
        raise InputError(file, "class", f"unknown class(es) {', '.join(unknown)}", f"use {', '.join(CLASSES)}")
    return frame


def sample_objects(frame: pd.DataFrame, n_per_class: int, eval_share: float, seed: int,
                   file: str | Path) -> pd.DataFrame:
    """n_per_class objects of each class (seeded), split into `alignment` and `evaluation` sets per class.

    Columns: obj_id, class, u..z, redshift, split. Order: class (STAR, GALAXY, QSO), then draw order."""
    check_catalogue(frame, file)
    rng = np.random.default_rng(seed)
    parts = []
    for cls in CLASSES:
        rows = frame[frame["class"].astype(str) == cls]
        if len(rows) < n_per_class:
            raise InputError(file, "class", f"only {len(rows)} {cls} objects, stability.n_per_class is {n_per_class}",
                             "lower stability.n_per_class in params.yaml (or use a larger catalogue)")
        pick = rows.iloc[np.sort(rng.choice(len(rows), n_per_class, replace=False))].copy()
        n_eval = int(round(eval_share * n_per_class))
        split = np.array(["alignment"] * (n_per_class - n_eval) + ["evaluation"] * n_eval, dtype=object)
        pick["split"] = split[rng.permutation(n_per_class)]
        parts.append(pick[[*REQUIRED, "split"]])
    out = pd.concat(parts, ignore_index=True)
    out["obj_id"] = out["obj_id"].astype(str)
    if out["obj_id"].duplicated().any():
        dup = out["obj_id"][out["obj_id"].duplicated()].iloc[0]
        raise InputError(file, "obj_id", f"repeated id {dup}", "give every object a unique obj_id")
    return out


def sample_warmup(frame: pd.DataFrame, probed: pd.DataFrame, n_per_class: int, seed: int,
                  file: str | Path) -> pd.DataFrame:
    """n_per_class objects of each class for the supervised warm-up, drawn (seeded, independently of the
    probed sample) from the catalogue rows that are NOT probed: the warm-up never sees a probed object.

    Columns as sample_objects, split = warmup. n_per_class = 0 gives an empty frame (no warm-up)."""
    check_catalogue(frame, file)
    rest = frame[~frame["obj_id"].astype(str).isin(set(probed["obj_id"].astype(str)))]
    rng = np.random.default_rng([seed, 1])  # its own stream: the probed sample is the same with or without it
    parts = []
    for cls in CLASSES:
        rows = rest[rest["class"].astype(str) == cls]
        if len(rows) < n_per_class:
            raise InputError(file, "class", f"only {len(rows)} {cls} objects outside the probed sample, "
                             f"stability.warmup_per_class is {n_per_class}",
                             "lower stability.warmup_per_class or stability.n_per_class in params.yaml")
        pick = rows.iloc[np.sort(rng.choice(len(rows), n_per_class, replace=False))].copy()
        pick["split"] = "warmup"
        parts.append(pick[[*REQUIRED, "split"]])
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*REQUIRED, "split"])
    out["obj_id"] = out["obj_id"].astype(str)
    return out


def feature_values(row) -> np.ndarray:
    """The ten feature values of one object in canonical order."""
    mags = [float(row[b]) for b in BANDS]
    cols = [float(row[a]) - float(row[b]) for a, b in COLOURS]
    return np.array([*mags, *cols, float(row["redshift"])])


def feature_lines(row, decimals: int = 3) -> list[str]:
    """Ten natural-language lines in canonical order (redshift gets one more decimal)."""
    v = feature_values(row)
    lines = [f"{b}-band magnitude: {v[k]:.{decimals}f}" for k, b in enumerate(BANDS)]
    lines += [f"{a}-{b} colour: {v[5 + k]:.{decimals}f}" for k, (a, b) in enumerate(COLOURS)]
    lines.append(f"redshift: {v[9]:.{decimals + 1}f}")
    return lines


def make_orders(n_orders: int, seed: int, where: tuple[str, str] = ("params.yaml", "stability.n_orders")
                ) -> list[tuple[str, tuple[int, ...]]]:
    """n_orders distinct (name, permutation) pairs: the named orders, then seeded random ones."""
    if isinstance(n_orders, bool) or not isinstance(n_orders, int) or n_orders < 1:
        raise InputError(where[0], where[1], f"must be a positive integer, got {n_orders!r}", "use e.g. 30")
    if n_orders > MAX_ORDERS:
        raise InputError(where[0], where[1],
                         f"{n_orders} orders asked, but {N_FEATURES} features have only {N_FEATURES}! = {MAX_ORDERS:,} "
                         "distinct orders", f"use at most {MAX_ORDERS} (30 is the study's default)")
    orders = list(NAMED_ORDERS[:n_orders])
    seen = {p for _, p in orders}
    assert len(seen) == len(orders), "named orders must be distinct"
    rng = np.random.default_rng(seed)
    k = 0
    while len(orders) < n_orders:
        perm = tuple(int(i) for i in rng.permutation(N_FEATURES))
        if perm in seen:
            continue
        seen.add(perm)
        k += 1
        orders.append((f"random_{k}", perm))
    return orders


def warmup_orders(n_objects: int, per_object: int, probed: Sequence[tuple[str, Sequence[int]]], seed: int,
                  where: tuple[str, str] = ("params.yaml", "stability.warmup_orders")
                  ) -> list[list[tuple[str, tuple[int, ...]]]]:
    """For each warm-up object, per_object distinct seeded random orders, none of them a probed order.

    Taught in one fixed order, the small model learned the label in that order only (33% -> 65% on the
    warm-up objects) and still answered QSO for every probed object; shown in many orders, it has to
    read the feature lines themselves. No probed order is ever taught, so the probe measures orders the
    model has not seen. Its own random stream: the probed orders are the same with or without it."""
    if isinstance(per_object, bool) or not isinstance(per_object, int) or per_object < 1:
        raise InputError(where[0], where[1], f"must be a positive integer, got {per_object!r}", "use e.g. 3")
    if per_object > MAX_ORDERS - len(probed):
        raise InputError(where[0], where[1], f"{per_object} orders per object asked, but only "
                         f"{MAX_ORDERS - len(probed):,} orders are not probed", "use e.g. 3")
    excluded = {tuple(int(i) for i in perm) for _, perm in probed}
    rng = np.random.default_rng([seed, 2])
    out = []
    for _ in range(n_objects):
        mine: list[tuple[str, tuple[int, ...]]] = []
        while len(mine) < per_object:
            perm = tuple(int(i) for i in rng.permutation(N_FEATURES))
            if perm in excluded or any(perm == p for _, p in mine):
                continue
            mine.append((f"warmup_{len(mine) + 1}", perm))
        out.append(mine)
    return out


def ordered_lines(lines: Sequence[str], perm: Sequence[int]) -> list[str]:
    return [lines[i] for i in perm]
