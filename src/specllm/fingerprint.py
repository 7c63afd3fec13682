"""Value fingerprints of the paper's data files and tables, and their comparison with a tolerance.

`specllm verify` checks a figure by the numbers it is drawn from and a table by the numbers it
prints, not by file hashes: another CPU moves floats in their 8th digit (issue 13), which changes
every hash while the science is unchanged. `fingerprint(path)` reduces a data file to what can be
compared with a tolerance and is small enough to stay reviewable in paper/reported/<profile>.json:

  * .csv          column names and row count (exact); each column as an array (below)
  * .npy / .npz   array names (exact); each array (below)
  * .json         every scalar by its path, stored as is (keys exact; ints, strings, booleans exact;
                  floats with the tolerance); a list of more than SMALL_N numbers as one array;
                  without the keys that measure the run (artifacts.MEASURED_JSON_KEY)
  * .tex          the printed numbers and the sha256 of the text around them (see `printed`)
  * anything else (text such as .jsonl, rendered .png): sha256 only

An array keeps its shape, kind and storage dtype exactly; a float16/float32 element may also move
by one unit of its last stored bit (float16 hidden states: a flip is 1e-3 relative). Integer, boolean and text arrays are compared exactly
(a changed count, label or model answer as text must fail). A float array of at most SMALL_N
elements is stored whole and compared element by element (allclose). A larger one is stored as a
summary: min, max, quantiles, NaN/inf counts, the sum and two weighted sums with fixed integer-hash
weights (bit-exact on every CPU). If every element moved by at most max(rtol*|y|, atol), a weighted
sum moves by at most rtol*sum|w*y| + atol*sum|w|, and a quantile by at most about
max(rtol*|q|, atol): those are the bounds `close_array` applies, with the scales taken from the
*regenerated* data (never from the frozen file). A real change moves many elements or their order
and with them the sums; one element changed by much less than the sum's tolerance could pass the
summary (the sha256, kept for the "identical" level, still shows that the file differs).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

# Arrays of up to this many elements are stored whole (a loss curve of the smoke profile, a
# prediction column of its test set); larger ones as a summary, to keep the frozen file reviewable.
SMALL_N = 100
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
N_WEIGHTS = 2


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _weights(n: int, k: int) -> np.ndarray:
    """Deterministic weights in [-1, 1) from an integer hash of the index (no float RNG, no BLAS)."""
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(40503 * (k + 1))) % np.uint64(2**32)
    return h.astype(np.float64) / 2.0**31 - 1.0


def _float(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def array(a: Any) -> dict[str, Any]:
    """Fingerprint of one array (see the module docstring)."""
    a = np.asarray(a)
    out: dict[str, Any] = {"shape": list(a.shape)}
    if a.dtype.kind == "f":
        flat = a.astype(np.float64).ravel()
        out["kind"] = "float"
        out["dtype"] = a.dtype.name
        if flat.size <= SMALL_N:
            out["values"] = [_float(x) if np.isfinite(x) or np.isnan(x) else str(x) for x in flat]
            return out
        fin = np.isfinite(flat)
        out["nan"] = int(np.isnan(flat).sum())
        out["posinf"] = int(np.isposinf(flat).sum())
        out["neginf"] = int(np.isneginf(flat).sum())
        # NaN positions are part of the result (a missing value moved is a change).
        out["nan_sha256"] = _sha(np.packbits(~fin).tobytes())
        x = flat[fin]
        stats: dict[str, float] = {}
        scale: dict[str, float] = {}
        if x.size:
            for q in QUANTILES:
                stats[f"q{q:g}"] = float(np.quantile(x, q))
            stats["sum"] = float(np.sum(x))
            scale["sum"] = float(np.sum(np.abs(x)))
            idx = np.flatnonzero(fin)
            for k in range(N_WEIGHTS):
                w = _weights(flat.size, k)[idx]
                stats[f"w{k}"] = float(np.dot(w, x))
                scale[f"w{k}"] = float(np.dot(np.abs(w), np.abs(x)))
                scale[f"w{k}_weights"] = float(np.sum(np.abs(w)))
            scale["sum_weights"] = float(x.size)
        out["stats"] = stats
        out["scale"] = scale
        return out
    if a.dtype.kind in "iub":
        out["kind"] = "int"
        if a.size <= SMALL_N:
            out["values"] = [int(v) for v in a.ravel()]
        else:
            out["sha256"] = _sha(np.ascontiguousarray(a.astype(np.int64)).tobytes())
        return out
    out["kind"] = "text"
    texts = ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in a.ravel()]
    if a.size <= SMALL_N:
        out["values"] = texts
    else:
        out["sha256"] = _sha("\x1f".join(texts).encode())
    return out


# ---------------------------------------------------------------- printed numbers (tables, text)

# A number as the paper prints it: optional sign, digits with LaTeX thousands separators ({,}),
# optional decimals. Digits glued to a word (a run name such as lr-0.001, a hash, rank-16) are part
# of the text around the numbers, hence exact.
NUMBER_RE = re.compile(r"(?<![\w.-])-?\d+(?:\{,\}\d{3})*(?:\.\d+)?")


def printed(text: str) -> dict[str, Any]:
    """{"numbers": [...as printed], "skeleton_sha256": ...}: the text with each number replaced by a
    placeholder that keeps its number of decimals (a changed format is a changed text)."""
    numbers = NUMBER_RE.findall(text)

    def hole(m: re.Match) -> str:
        s = m.group(0)
        return f"\x00{len(s.split('.')[1]) if '.' in s else 'i'}\x00"

    return {"numbers": numbers, "skeleton_sha256": _sha(NUMBER_RE.sub(hole, text).encode())}


def _num(s: str) -> float:
    return float(s.replace("{,}", ""))


def close_printed(frozen: dict[str, Any], now: dict[str, Any], rel: float = 0.0, units: float = 1.0
                  ) -> tuple[bool, float, str]:
    """Same text around the numbers, same count; integers exact; a decimal printed with d digits may
    move by `units` x 10^-d (a value that moved by 1e-8 across a rounding boundary flips the last
    printed digit) or by rel x |frozen|. (ok, worst relative difference, why not)."""
    if frozen.get("skeleton_sha256") != now.get("skeleton_sha256"):
        return False, math.inf, "text differs"
    a, b = frozen.get("numbers") or [], now.get("numbers") or []
    if len(a) != len(b):
        return False, math.inf, "number of printed values differs"
    worst = 0.0
    for fa, nb in zip(a, b):
        if fa == nb:
            continue
        x, y = _num(fa), _num(nb)
        worst = max(worst, abs(x - y) / max(abs(x), 1e-300))
        if "." not in fa:
            return False, worst, f"printed integer {fa} -> {nb}"
        d = len(fa.split(".")[1])
        if abs(x - y) > max(units * 10.0**-d, rel * abs(x)) * (1 + 1e-9):
            return False, worst, f"printed {fa} -> {nb}"
    return True, worst, ""


# ---------------------------------------------------------------- files

def _flatten(data: Any, path: str, leaves: dict[str, Any], arrays: dict[str, Any]) -> None:
    """JSON -> {path: scalar} (stored as is: compact and readable) and {path: array fingerprint} for
    lists of more than SMALL_N numbers."""
    if isinstance(data, dict):
        if not data:
            leaves[path + "{}"] = "{}"
        for k, v in data.items():
            _flatten(v, f"{path}.{k}" if path else str(k), leaves, arrays)
    elif isinstance(data, list) and len(data) > SMALL_N and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in data):
        floats = any(isinstance(v, float) for v in data)
        arrays[path] = array(np.asarray(data, dtype=np.float64 if floats else np.int64))
    elif isinstance(data, list):
        if not data:
            leaves[path + "[]"] = "[]"
        for i, v in enumerate(data):
            _flatten(v, f"{path}[{i}]", leaves, arrays)
    elif isinstance(data, float) and not math.isfinite(data):
        leaves[path] = str(data)  # JSON has no NaN/inf literal in strict readers: keep it as text
    else:
        leaves[path] = data


def close_leaves(frozen: dict[str, Any], now: dict[str, Any], rtol: float, atol: float) -> tuple[bool, float, str]:
    """JSON scalars by path: keys exact; floats within max(rtol*|b|, atol); everything else exact."""
    if set(frozen) != set(now):
        gone, new = sorted(set(frozen) - set(now)), sorted(set(now) - set(frozen))
        return False, math.inf, f"keys differ (gone {gone[:3]}, new {new[:3]})"
    worst = 0.0
    for key in sorted(frozen):
        x, y = frozen[key], now[key]
        if x == y and type(x) is type(y):
            continue
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (x, y))
        if not numeric or not any(isinstance(v, float) for v in (x, y)):
            return False, math.inf, f"{key}: {x!r} -> {y!r}"
        worst = max(worst, _rel(y, x))
        if not _close(float(y), float(x), rtol, atol):
            return False, worst, f"{key}: {x!r} -> {y!r}"
    return True, worst, ""


def _written_decimals(path: Path) -> dict[str, int | None]:
    """{column: decimals it is written with} for a CSV whose floats are rounded when written (e.g.
    6 decimals); None for a column written in full precision (an exponent or > 12 decimals)."""
    import csv

    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        most: list[int | None] = [0] * len(header)
        for row in reader:
            for i, cell in enumerate(row[: len(header)]):
                if most[i] is None:
                    continue
                if "e" in cell.lower() and any(ch.isdigit() for ch in cell):
                    most[i] = None
                elif re.fullmatch(r"-?\d+\.\d+", cell):
                    most[i] = max(most[i], len(cell.split(".")[1]))
    return {h: (d if d is not None and 0 < d <= 12 else None) for h, d in zip(header, most)}


def fingerprint(path: Path) -> dict[str, Any] | None:
    """{"sha256": ..., and what value comparison needs} for one file; None when it is absent."""
    from specllm import artifacts

    path = Path(path)
    if not path.is_file():
        return None
    try:
        out: dict[str, Any] = {"sha256": artifacts.digest(path)}
        _values(path, out)
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as err:  # empty/corrupt CSV, bad JSON, bad npz
        from specllm.io import sha256_file

        return {"sha256": sha256_file(path), "unreadable": f"{type(err).__name__}: {err}"[:200]}
    return out


def _values(path: Path, out: dict[str, Any]) -> None:
    """Add what value comparison needs to a file's fingerprint `out` (see the module docstring)."""
    from specllm import artifacts

    suffix = path.suffix.lower()
    if suffix == ".csv":
        import pandas as pd

        df = pd.read_csv(path)
        out["columns"] = [str(c) for c in df.columns]
        out["rows"] = int(len(df))
        out["arrays"] = {str(c): array(df[c].to_numpy()) for c in df.columns}
        for col, d in _written_decimals(path).items():
            if col in out["arrays"] and out["arrays"][col]["kind"] == "float" and d is not None:
                out["arrays"][col]["decimals"] = d
    elif suffix == ".npy":
        out["arrays"] = {"": array(np.load(path, allow_pickle=False))}
    elif suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            out["arrays"] = {name: array(npz[name]) for name in sorted(npz.files)}
    elif suffix == ".json":
        leaves: dict[str, Any] = {}
        arrays: dict[str, Any] = {}
        _flatten(artifacts._drop_measurements(json.loads(path.read_text(encoding="utf-8"))), "", leaves, arrays)
        out["leaves"] = leaves
        out["arrays"] = arrays
    elif suffix == ".tex":
        out["printed"] = printed(path.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- comparison

def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    return abs(a - b) <= max(rtol * abs(b), atol)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300) if a != b else 0.0


def _magnitude(fp: dict[str, Any]) -> float:
    """The largest finite magnitude of a float array fingerprint."""
    if "values" in fp:
        vals = [abs(v) for v in fp["values"] if isinstance(v, (int, float)) and math.isfinite(v)]
        return max(vals, default=0.0)
    stats = fp.get("stats") or {}
    return max(abs(stats.get("q0", 0.0)), abs(stats.get("q1", 0.0)))


def close_array(frozen: dict[str, Any], now: dict[str, Any], rtol: float, atol: float) -> tuple[bool, float, str]:
    """(ok, worst relative difference, why not) for two array fingerprints; shapes and kinds exact."""
    if frozen.get("shape") != now.get("shape") or frozen.get("kind") != now.get("kind"):
        return False, math.inf, f"shape/kind {frozen.get('shape')} {frozen.get('kind')} -> {now.get('shape')} {now.get('kind')}"
    if frozen.get("kind") != "float":
        same = frozen.get("values") == now.get("values") and frozen.get("sha256") == now.get("sha256")
        return same, 0.0 if same else math.inf, "" if same else f"{frozen['kind']} values differ"
    if frozen.get("dtype", now.get("dtype")) != now.get("dtype"):
        return False, math.inf, f"dtype {frozen.get('dtype')} -> {now.get('dtype')}"
    # Stored in float16/float32, a value that moved by 1e-8 can flip its last stored bit: allow one
    # unit there (2 eps covers the edge of a binade). float64 (CSV, JSON) adds nothing.
    if now.get("dtype") in ("float16", "float32"):
        rtol = max(rtol, 2 * float(np.finfo(now["dtype"]).eps))
    # Rounding errors scale with the operands: an element near zero moves like the array's largest.
    atol = max(atol, rtol * _magnitude(now))
    if "values" in frozen or "values" in now:
        fa, nb = frozen.get("values") or [], now.get("values") or []
        if len(fa) != len(nb):
            return False, math.inf, "length differs"
        worst, bad = 0.0, ""
        for i, (x, y) in enumerate(zip(fa, nb)):
            if x == y:
                continue
            if not all(isinstance(v, (int, float)) for v in (x, y)):
                return False, math.inf, f"[{i}] {x} -> {y}"
            worst = max(worst, abs(x - y) / max(abs(x), atol / max(rtol, 1e-300), 1e-300))
            if not bad and not _close(y, x, rtol, atol):
                bad = f"[{i}] {x!r} -> {y!r}"
        return not bad, worst, bad
    for key in ("nan", "posinf", "neginf", "nan_sha256"):
        if frozen.get(key) != now.get(key):
            return False, math.inf, f"{key} differs"
    fs, ns, scale = frozen.get("stats") or {}, now.get("stats") or {}, now.get("scale") or {}
    if set(fs) != set(ns):
        return False, math.inf, "summary differs"
    worst, bad = 0.0, ""
    for name in sorted(fs):
        x, y = fs[name], ns[name]
        if x == y:
            continue
        if name in scale:  # a (weighted) sum: bound by the regenerated data's own scale
            limit = rtol * scale[name] + atol * scale.get(f"{name}_weights", 0.0)
            worst = max(worst, abs(x - y) / max(scale[name], 1e-300))
        else:
            limit = max(rtol * max(abs(x), abs(y)), atol)
            worst = max(worst, _rel(y, x))
        if not bad and abs(x - y) > limit:
            bad = f"{name} {x!r} -> {y!r}"
    return not bad, worst, bad


def close_file(frozen: dict[str, Any], now: dict[str, Any], rtol: float, atol: float,
               printed_rel: float = 0.0, printed_units: float = 1.0, written_units: float = 0.0
               ) -> tuple[bool, float, str]:
    """(ok, worst relative difference, why not) for two file fingerprints. written_units > 0: a CSV
    column written with d decimals may also move by written_units x 10^-d (d from the regenerated
    file, never from the frozen one)."""
    if "unreadable" in now or "unreadable" in frozen:
        return False, math.inf, f"unreadable: {now.get('unreadable') or frozen.get('unreadable')}"
    if "printed" in frozen or "printed" in now:
        if "printed" not in frozen or "printed" not in now:
            return False, math.inf, "no printed values recorded"
        return close_printed(frozen["printed"], now["printed"], printed_rel, printed_units)
    if "arrays" not in frozen or "arrays" not in now:
        return False, math.inf, "no values recorded to compare (only the sha256)"
    for key in ("columns", "rows"):
        if frozen.get(key) != now.get(key):
            return False, math.inf, f"{key} differ"
    worst = 0.0
    if "leaves" in frozen or "leaves" in now:
        ok, worst, why = close_leaves(frozen.get("leaves") or {}, now.get("leaves") or {}, rtol, atol)
        if not ok:
            return False, worst, why
    fa, na = frozen["arrays"], now["arrays"]
    if set(fa) != set(na):
        gone, new = sorted(set(fa) - set(na)), sorted(set(na) - set(fa))
        return False, math.inf, f"keys differ (gone {gone[:3]}, new {new[:3]})"
    for name in sorted(fa):
        # The regenerated file's written decimals; the frozen file's can only make this tighter.
        d = na[name].get("decimals") if written_units else None
        if d is not None and isinstance(fa[name].get("decimals"), int):
            d = max(d, fa[name]["decimals"])
        ok, w, why = close_array(fa[name], na[name], rtol,
                                atol if d is None else max(atol, written_units * 10.0**-d * (1 + 1e-9)))
        worst = max(worst, w)
        if not ok:
            return False, worst, f"{name or 'array'}: {why}"
    return True, worst, ""
