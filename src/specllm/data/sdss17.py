"""Import the Kaggle "Stellar Classification Dataset - SDSS17" CSV as the classification catalogue.

`specllm data import-sdss17 PATH [--out DIR]` validates the file and writes, to DIR (default
data/external/sdss17):

* ``catalogue.csv``: the same schema as the embedded ``data/raw/catalogue.csv``:
  ``obj_id, class, u, g, r, i, z, redshift, simulated, source`` (simulated = 0, source = sdss17),
  rows in input order, magnitudes written ``%.5f``, redshift ``%.9g`` (as the embedded builder), ``\\n`` line endings.
* ``import.json``: source file name, size, sha256, whether it is the verified full release, row
  counts in and out, and every dropped row counted by reason.

Each file is written to a temporary file and renamed into DIR, only after the whole file validated
(catalogue.csv first, then import.json, which holds the catalogue's sha256): a failed import leaves
an earlier import intact. The importer never removes or overwrites what it did not write: DIR must be
new, empty, or an earlier import (its import.json, and otherwise only README.md or .gitignore), so
``--out data`` is refused instead of replacing data/. import.json names the source file by its name,
size and sha256 (never an absolute path, which would differ per machine).

The default DIR, data/external/sdss17, is a DVC dependency of the stages that read a catalogue
(dvc.yaml): its committed README.md keeps it present without an import, so a (re-)import is seen by
``dvc status`` and a deleted import never matches an earlier run in DVC's run cache.

Policy (what is an error and what is dropped):

* Structural problems raise InputError (naming the file, the field and the fix) and write nothing:
  a missing or renamed column (with close matches), a duplicated column, a value that does not
  parse as a number (e.g. ``abc`` as a magnitude), a non-integer value in an integer column, an
  unknown class, an empty file, or no rows left after the drops below.
* Row-level data-quality problems drop the row, and every drop is counted in import.json and
  printed (never silent). Each dropped row is counted once, under the first reason in this order:
  ``missing_value`` (empty/NA cell), ``non_finite`` (inf), ``magnitude_sentinel`` (the SDSS
  -9999 "no measurement" value in any of u g r i z; the published file has exactly one such row),
  ``magnitude_out_of_range`` (outside [5, 40] mag), ``redshift_out_of_range`` (outside the per-class
  range in REDSHIFT_RANGE), ``coordinates_out_of_range`` (alpha outside [0, 360] or delta outside
  [-90, 90]), ``duplicate_row`` (identical, field for field, to an earlier row) and
  ``duplicate_spec_obj_ID`` (the same spectrum as an earlier row with other values differing).
* Repeated obj_IDs at the same position (within 1 arcsec: one object with two spectra) keep their
  first row and drop the rest (``duplicate_obj_ID_same_position``, after the reasons above). Other
  repeated obj_IDs are kept. The Kaggle CSV writes the 64-bit SDSS objID as a float64 (e.g.
  ``1.2376632049208525e+18``), which cannot hold 19 digits: neighbouring objects of one
  run/camcol/field round to the same value (in the 10k sample all 285 repeated values belong to
  objects 6 to 770 arcsec apart, i.e. different objects). The key of the output is therefore
  ``obj_id`` = spec_obj_ID as an integer (the spectrum id, unique: it encodes plate, MJD and
  fiber far above float64's rounding step). Repeats are counted in import.json.
* Negative redshifts within the per-class range are kept (stars' blueshifts are real) and counted
  by class in import.json and a warning. Extra columns (an unnamed index column such as pandas'
  ``Unnamed: 0`` or an empty header, or any other) are ignored, named in import.json and a warning.
* Echoed values are clipped to 80 characters (a broken file can hold a 200 MB field).
* Checksum: the published file (EXPECTED_SIZE bytes, sha256 EXPECTED_SHA256, 100,000 rows) is
  reported as "verified full release"; any other file is imported with a warning that results
  will not match the paper.
"""

from __future__ import annotations

import csv
import difflib
import hashlib
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from specllm import paths
from specllm.errors import InputError, clip
from specllm.io import sha256_file, write_json, write_text
from specllm.vocab import BANDS
from specllm.vocab import CLASSES as _LABELS

EXPECTED_SHA256 = "faefcad9b950309282024dd351289ee14ae30f65a7b2ef32c9fa442da9dbe585"
EXPECTED_SIZE = 16_755_863
EXPECTED_ROWS = 100_000
KAGGLE = "https://www.kaggle.com/datasets/fedesoriano/stellar-classification-dataset-sdss17"

COLUMNS = (
    "obj_ID", "alpha", "delta", "u", "g", "r", "i", "z", "run_ID", "rerun_ID", "cam_col",
    "field_ID", "spec_obj_ID", "class", "redshift", "plate", "MJD", "fiber_ID",
)
MAGNITUDES = BANDS
INTEGER_COLUMNS = ("run_ID", "rerun_ID", "cam_col", "field_ID", "plate", "MJD", "fiber_ID")
ID_COLUMNS = ("obj_ID", "spec_obj_ID")
FLOAT_COLUMNS = ("alpha", "delta", *MAGNITUDES, "redshift")
# the export's own (alphabetical) order: import.json's counts and the import's messages keep it
CLASSES = tuple(sorted(_LABELS))
SENTINEL = -9999.0
MAG_RANGE = (5.0, 40.0)
# SDSS pipeline redshifts: stars are |cz| < 3000 km/s, galaxy templates stop near z = 2,
# quasars reach z ~ 7. Wider than the published file (STAR -0.0100..0.0042, GALAXY -0.0100..1.996,
# QSO 0.0005..7.011) so nothing real is dropped; narrow enough to catch km/s or wrong columns.
REDSHIFT_RANGE = {"STAR": (-0.01, 0.01), "GALAXY": (-0.01, 2.0), "QSO": (-0.01, 7.5)}
DROP_REASONS = (
    "missing_value", "non_finite", "magnitude_sentinel", "magnitude_out_of_range",
    "redshift_out_of_range", "coordinates_out_of_range", "duplicate_row", "duplicate_spec_obj_ID",
    "duplicate_obj_ID_same_position",
)
OUT_COLUMNS = ("obj_id", "class", "u", "g", "r", "i", "z", "redshift", "simulated", "source")
MAG_FORMAT = "%.5f"
REDSHIFT_FORMAT = "%.9g"  # as the embedded catalogue.csv
SOURCE = "sdss17"
_UNNAMED = re.compile(r"^Unnamed: \d+$")
_NA_TOKENS = {"", "nan", "na", "n/a", "null", "none", "-nan", "+nan"}
_FIX_COLUMNS = f"use the CSV from {KAGGLE} unchanged (header: {','.join(COLUMNS)})"


@dataclass
class ImportResult:
    """What an import produced: the cleaned catalogue, the report written to import.json, warnings."""

    catalogue: pd.DataFrame
    report: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    out: Path | None = None

    @property
    def verified(self) -> bool:
        return bool(self.report["verified_full_release"])




def _line(row_index: int) -> int:
    return int(row_index) + 2  # header is line 1


def file_identity(path: Path) -> dict[str, Any]:
    """Size, sha256 and whether they are those of the published full file."""
    size = path.stat().st_size
    sha = sha256_file(path)
    return {"bytes": size, "sha256": sha, "verified": size == EXPECTED_SIZE and sha == EXPECTED_SHA256}


def _read_header(path: Path) -> list[str]:
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh), None)
    except UnicodeDecodeError as err:
        raise InputError(path, "-", f"not UTF-8 text ({err.reason} at byte {err.start})", _FIX_COLUMNS) from None
    except csv.Error as err:  # e.g. a header field longer than csv's field size limit
        raise InputError(path, "-", f"line 1: not a CSV header ({clip(str(err), 200)})", _FIX_COLUMNS) from None
    if not header:
        raise InputError(path, "-", "empty file (no header line)", _FIX_COLUMNS)
    return [h.strip() for h in header]


def _check_columns(path: Path, header: list[str]) -> None:
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(path, name if len(name) <= 80 else clip(name), "column appears twice in the header",
                             "keep one column of that name; " + _FIX_COLUMNS)
        seen.add(name)
    missing = [c for c in COLUMNS if c not in seen]
    if not missing:
        return
    extra = [h for h in header if h not in COLUMNS and len(h) <= 80]  # a longer name is no close match
    lower = {h.lower(): h for h in extra}
    parts = []
    for col in missing:
        near = [lower[m] for m in difflib.get_close_matches(col.lower(), list(lower), n=3, cutoff=0.6)]
        hint = f" (close matches: {', '.join(repr(n) for n in near)})" if near else " (no close match)"
        parts.append(f"'{col}'{hint}")
    renames = [f"'{lower[m]}' -> '{c}'" for c in missing
               for m in difflib.get_close_matches(c.lower(), list(lower), n=1, cutoff=0.6)]
    fix = (f"rename {', '.join(renames)}; " if renames else "") + _FIX_COLUMNS
    raise InputError(path, missing[0], f"missing column{'s' if len(missing) > 1 else ''}: {'; '.join(parts)}", fix)


def _extra_columns(header: list[str]) -> dict[str, list[str]]:
    """Columns the import ignores: unnamed index columns (pandas' `to_csv()` writes one with an empty
    header, read back as 'Unnamed: 0') and any other column beyond COLUMNS. Names clipped."""
    extra = [h for h in header if h not in COLUMNS]
    index = [h for h in extra if h == "" or _UNNAMED.match(h)]
    return {"index": [clip(h) for h in index], "other": [clip(h) for h in extra if h not in index]}


def _parse_numbers(path: Path, name: str, text: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse a text column: (values as float64 with NaN for missing, mask of missing cells).

    Text that is neither a number nor an NA token raises InputError naming the first bad line.
    """
    stripped = text.str.strip()
    values = pd.to_numeric(stripped, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    is_na_token = stripped.str.lower().isin(_NA_TOKENS).to_numpy()
    bad = np.isnan(values) & ~is_na_token
    if bad.any():
        idx = np.flatnonzero(bad)
        example = stripped.iloc[idx[0]]
        raise InputError(
            path, name,
            f"line {_line(idx[0])}: {clip(example)} is not a number ({len(idx)} such value{'s' if len(idx) > 1 else ''}"
            f" in this column, first on lines {', '.join(str(_line(i)) for i in idx[:5])})",
            f"correct or remove those lines; {name} must be numeric",
        )
    return values, is_na_token


def _parse_ids(path: Path, name: str, text: pd.Series, usable: np.ndarray) -> list[int | None]:
    """SDSS ids as Python ints: exact for integer text, float64's value for Kaggle's float text."""
    out: list[int | None] = []
    for i, raw in enumerate(text.str.strip()):
        if not usable[i]:
            out.append(None)
            continue
        if raw.lstrip("+").isdigit():
            value = int(raw)
        else:
            f = float(raw)
            if not f.is_integer():
                raise InputError(path, name, f"line {_line(i)}: {clip(raw)} is not an integer id",
                                 f"correct line {_line(i)}")
            value = int(f)
        if value <= 0:
            raise InputError(path, name, f"line {_line(i)}: id {clip(raw)} is not positive", f"correct line {_line(i)}")
        out.append(value)
    return out


def _check_integers(path: Path, name: str, values: np.ndarray) -> None:
    finite = np.isfinite(values)
    bad = finite & (values != np.round(values))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(path, name, f"line {_line(i)}: {clip(values[i])} is not an integer ({int(bad.sum())} such values)",
                         f"correct line {_line(i)}; {name} must be an integer")


def read_sdss17(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate and clean the CSV; return (catalogue in the output schema, report dict).

    Raises InputError for structural problems (see the module docstring); writes nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "-", "file not found", f"give the path of star_classification.csv (download: {KAGGLE})")
    header = _read_header(path)
    _check_columns(path, header)
    try:
        text = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError) as err:
        raise InputError(path, "-", f"not a well-formed CSV ({str(err).strip()})", _FIX_COLUMNS) from None
    text.columns = [c.strip() for c in text.columns]
    ignored = _extra_columns(header)
    n = len(text)
    if n == 0:
        raise InputError(path, "-", "no data rows after the header", _FIX_COLUMNS)

    reason = np.full(n, "", dtype=object)  # first drop reason per row ("" = kept)

    def mark(mask: np.ndarray, why: str) -> None:
        reason[mask & (reason == "")] = why

    num: dict[str, np.ndarray] = {}
    missing_by_col: dict[str, int] = {}
    nonfinite_by_col: dict[str, int] = {}
    missing_any = np.zeros(n, bool)
    nonfinite_any = np.zeros(n, bool)
    for col in (*ID_COLUMNS, *FLOAT_COLUMNS, *INTEGER_COLUMNS):
        values, na = _parse_numbers(path, col, text[col])
        inf = np.isinf(values)
        if col in INTEGER_COLUMNS:
            _check_integers(path, col, values)
        num[col] = values
        missing_any |= na
        nonfinite_any |= inf
        if na.any():
            missing_by_col[col] = int(na.sum())
        if inf.any():
            nonfinite_by_col[col] = int(inf.sum())

    cls = text["class"].str.strip().str.upper()
    cls_missing = cls.str.lower().isin(_NA_TOKENS).to_numpy()
    unknown = ~cls.isin(CLASSES).to_numpy() & ~cls_missing
    if unknown.any():
        idx = np.flatnonzero(unknown)
        values = sorted(set(text["class"].iloc[idx].str.strip()))
        near = difflib.get_close_matches(values[0][:20].upper(), CLASSES, n=1)
        raise InputError(
            path, "class",
            f"line {_line(idx[0])}: unknown class {clip(text['class'].iloc[idx[0]].strip())} "
            f"({len(idx)} row{'s' if len(idx) > 1 else ''} with {', '.join(clip(v) for v in values[:5])})",
            (f"did you mean '{near[0]}'? " if near else "") + f"class must be one of {', '.join(CLASSES)}",
        )
    if cls_missing.any():
        missing_by_col["class"] = int(cls_missing.sum())
        missing_any |= cls_missing
    mark(missing_any, "missing_value")
    mark(nonfinite_any, "non_finite")

    mags = np.column_stack([num[b] for b in MAGNITUDES])
    sentinel = mags == SENTINEL
    mark(sentinel.any(axis=1), "magnitude_sentinel")
    with np.errstate(invalid="ignore"):
        out_of_range = (mags < MAG_RANGE[0]) | (mags > MAG_RANGE[1])
    mark((out_of_range & ~sentinel).any(axis=1), "magnitude_out_of_range")

    z = num["redshift"]
    z_bad = np.zeros(n, bool)
    for name, (lo, hi) in REDSHIFT_RANGE.items():
        this = (cls == name).to_numpy()
        with np.errstate(invalid="ignore"):
            z_bad |= this & ((z < lo) | (z > hi))
    z_bad_by_class = {c: int((z_bad & (cls == c).to_numpy() & (reason == "")).sum()) for c in CLASSES}
    mark(z_bad, "redshift_out_of_range")
    with np.errstate(invalid="ignore"):
        mark((num["alpha"] < 0) | (num["alpha"] > 360) | (num["delta"] < -90) | (num["delta"] > 90),
             "coordinates_out_of_range")

    usable_ids = ~(missing_any | nonfinite_any)
    obj_ids = _parse_ids(path, "obj_ID", text["obj_ID"], usable_ids)
    spec_ids = _parse_ids(path, "spec_obj_ID", text["spec_obj_ID"], usable_ids)

    # Duplicates among the rows still kept: identical rows first, then a repeated spectrum id.
    canon = text[list(COLUMNS)].apply(lambda s: s.str.strip())
    kept = reason == ""
    dup_row = np.zeros(n, bool)
    dup_row[kept] = canon[kept].duplicated(keep="first").to_numpy()
    mark(dup_row, "duplicate_row")
    kept = reason == ""
    spec_series = pd.Series(spec_ids, dtype=object)
    dup_spec = np.zeros(n, bool)
    dup_spec[kept] = spec_series[kept].duplicated(keep="first").to_numpy()
    mark(dup_spec, "duplicate_spec_obj_ID")
    # Repeated obj_IDs: one photometric object with two spectra sits at the same position (within 1
    # arcsec): it would enter the stability sample twice, so only its first row is kept. Repeats at
    # other positions are float64 rounding collisions of different objects and are all kept.
    kept = reason == ""
    same_object = _same_object_repeats(obj_ids, num["alpha"], num["delta"], kept)
    mark(same_object, "duplicate_obj_ID_same_position")
    kept = reason == ""
    if not kept.any():
        raise InputError(path, "-", f"all {n} rows were dropped ({_drop_summary(reason)})",
                         "check that this is the SDSS17 star_classification.csv")
    obj_kept = pd.Series([obj_ids[i] for i in np.flatnonzero(kept)], dtype=object)
    rep = obj_kept[obj_kept.duplicated(keep=False)]
    with np.errstate(invalid="ignore"):
        negative_z = {c: int((kept & (z < 0) & (cls == c).to_numpy()).sum()) for c in CLASSES}

    catalogue = pd.DataFrame({
        "obj_id": pd.array([spec_ids[i] for i in np.flatnonzero(kept)], dtype=object),
        "class": cls[kept].to_numpy(),
        **{b: num[b][kept] for b in MAGNITUDES},
        "redshift": z[kept],
        "simulated": np.zeros(int(kept.sum()), dtype=np.int64),
        "source": SOURCE,
    })

    dropped = {r: int((reason == r).sum()) for r in DROP_REASONS}
    report: dict[str, Any] = {
        "rows_in": n,
        "rows_out": int(kept.sum()),
        "dropped": dropped,
        "dropped_total": int(n - kept.sum()),
        "dropped_detail": {
            "missing_value_cells_by_column": missing_by_col,
            "non_finite_cells_by_column": nonfinite_by_col,
            "magnitude_sentinel_cells_by_band": {b: int(sentinel[:, k].sum())
                                                 for k, b in enumerate(MAGNITUDES) if sentinel[:, k].any()},
            "redshift_out_of_range_by_class": {c: v for c, v in z_bad_by_class.items() if v},
        },
        "dropped_lines": {r: [_line(i) for i in np.flatnonzero(reason == r)[:20]] for r in DROP_REASONS if dropped[r]},
        "classes_in": {c: int((cls == c).sum()) for c in CLASSES},
        "classes_out": {c: int((catalogue["class"] == c).sum()) for c in CLASSES},
        "obj_ID_repeats": {
            "rows": int(len(rep)),
            "distinct_values": int(rep.nunique()),
            "same_position_within_1arcsec_dropped": int(same_object.sum()),
            "policy": "same position (within 1 arcsec): one object with two spectra, first row kept, the rest "
                      "dropped (duplicate_obj_ID_same_position); other positions: kept, obj_ID is float-rounded "
                      "in the Kaggle CSV; obj_id in catalogue.csv is spec_obj_ID",
        },
        "negative_redshift_kept": {
            "by_class": negative_z,
            "policy": "kept: SDSS pipeline redshifts below 0 are real blueshifts (stars' radial velocities) "
                      "within the per-class range",
        },
        "ignored_columns": ignored,
        "policy": {
            "errors": "missing/renamed/duplicated column, non-numeric value, non-integer in integer column, "
                      "unknown class",
            "drop_order": list(DROP_REASONS),
            "magnitude_range": list(MAG_RANGE),
            "magnitude_sentinel": SENTINEL,
            "redshift_range": {k: list(v) for k, v in REDSHIFT_RANGE.items()},
        },
    }
    return catalogue, report


def _same_object_repeats(obj_ids: list[int | None], ra: np.ndarray, dec: np.ndarray,
                         kept: np.ndarray) -> np.ndarray:
    """Rows (among `kept`) repeating an earlier kept row's obj_ID within 1 arcsec of it."""
    out = np.zeros(len(obj_ids), bool)
    rows = np.flatnonzero(kept)
    ids = pd.Series([obj_ids[i] for i in rows], index=rows, dtype=object)
    for _, grp in ids[ids.duplicated(keep=False)].groupby(ids[ids.duplicated(keep=False)]):
        first: list[int] = []
        for i in grp.index:
            if any(_arcsec(ra[i], dec[i], ra[j], dec[j]) < 1.0 for j in first):
                out[i] = True
            else:
                first.append(i)
    return out


def _arcsec(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    return math.hypot((ra1 - ra2) * math.cos(math.radians(float(dec1))), dec1 - dec2) * 3600.0


def _drop_summary(reason: np.ndarray) -> str:
    counts = {r: int((reason == r).sum()) for r in DROP_REASONS}
    return ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none"


def catalogue_csv_text(catalogue: pd.DataFrame) -> str:
    """The catalogue as deterministic CSV text (fixed float formats, \\n line endings)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(OUT_COLUMNS)
    mags = {b: catalogue[b].to_numpy(dtype=np.float64) for b in MAGNITUDES}
    z = catalogue["redshift"].to_numpy(dtype=np.float64)
    ids, classes = catalogue["obj_id"].tolist(), catalogue["class"].tolist()
    sim, src = catalogue["simulated"].tolist(), catalogue["source"].tolist()
    for k in range(len(catalogue)):
        writer.writerow([int(ids[k]), classes[k], *(MAG_FORMAT % mags[b][k] for b in MAGNITUDES),
                         REDSHIFT_FORMAT % z[k], int(sim[k]), src[k]])
    return buf.getvalue()


def import_sdss17(path: str | Path, out: str | Path | None = None) -> ImportResult:
    """Validate PATH and write catalogue.csv + import.json to OUT (default paths.SDSS17), file by file."""
    path = Path(path)
    out = Path(out) if out is not None else paths.SDSS17
    check_out(out)
    catalogue, report = read_sdss17(path)
    ident = file_identity(path)
    warnings: list[str] = []
    name = path.name  # records and warnings name the file, never its absolute path
    if not ident["verified"]:
        warnings.append(
            f"{name}: not the published full file: {report['rows_in']:,} rows, {ident['bytes']:,} bytes, "
            f"sha256 {ident['sha256']} (the full release has {EXPECTED_ROWS:,} rows, {EXPECTED_SIZE:,} bytes, "
            f"sha256 {EXPECTED_SHA256}); imported anyway, but results will not match the paper"
        )
    if report["dropped_total"] > 0.01 * report["rows_in"]:
        warnings.append(f"{name}: {report['dropped_total']:,} of {report['rows_in']:,} rows dropped (more than 1%)")
    warnings.extend(f"{name}: {w}" for w in _policy_warnings(report))
    text = catalogue_csv_text(catalogue)
    data = text.encode("utf-8")
    report = {
        "format": "specllm-sdss17-import/1",
        "source": {"name": name, "bytes": ident["bytes"], "sha256": ident["sha256"]},
        "expected_full_release": {"bytes": EXPECTED_SIZE, "sha256": EXPECTED_SHA256, "rows": EXPECTED_ROWS,
                                  "url": KAGGLE},
        "verified_full_release": ident["verified"],
        **report,
        "output": {"catalogue.csv": {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                    "columns": list(OUT_COLUMNS),
                                    "formats": {"magnitudes": MAG_FORMAT, "redshift": REDSHIFT_FORMAT}}},
        "warnings": warnings,
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "catalogue.csv", text)
    write_json(out / "import.json", report)
    return ImportResult(catalogue=catalogue, report=report, warnings=warnings, out=out)


OWN_FILES = ("catalogue.csv", "import.json")
KEEP_FILES = ("README.md", ".gitignore")  # the committed placeholder of the default folder


def check_out(out: Path) -> None:
    """Refuse an output folder holding anything this importer did not write (it never removes it)."""
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(out, "--out", "exists and is not a folder", "give a new or empty folder (default data/external/sdss17)")
    names = sorted(p.name for p in out.iterdir())
    foreign = [n for n in names if n not in (*OWN_FILES, *KEEP_FILES)]
    earlier = out / "import.json"
    ours = False
    if earlier.is_file():
        try:
            ours = str(json.loads(earlier.read_text()).get("format", "")).startswith("specllm-sdss17-import/")
        except (ValueError, AttributeError):
            ours = False
    if foreign or ("catalogue.csv" in names and not ours):
        listed = ", ".join(clip(n, 40) for n in (foreign or ["catalogue.csv"])[:6]) + (" ..." if len(foreign) > 6 else "")
        raise InputError(out, "--out", f"holds files an SDSS17 import did not write ({listed}); the importer "
                         "replaces only its own catalogue.csv and import.json and never removes a folder",
                         "give a new or empty folder, or an earlier import's folder (default data/external/sdss17)")


def _policy_warnings(report: dict[str, Any]) -> list[str]:
    """What a real export needed: ignored columns, repeated obj_IDs, negative redshifts (each counted)."""
    out = []
    cols = report["ignored_columns"]
    if cols["index"]:
        out.append(f"ignored {len(cols['index'])} unnamed index column(s) ({', '.join(cols['index'])})")
    if cols["other"]:
        out.append(f"ignored {len(cols['other'])} column(s) not in the SDSS17 schema ({', '.join(cols['other'][:5])})")
    rp = report["obj_ID_repeats"]
    dropped = rp["same_position_within_1arcsec_dropped"]
    if dropped:
        out.append(f"dropped {dropped:,} row(s) repeating an earlier row's obj_ID at the same position "
                   "(one object with two spectra: first row kept)")
    if rp["rows"]:
        out.append(f"kept {rp['rows']:,} rows sharing {rp['distinct_values']:,} repeated obj_ID values at different "
                   "positions (float64 rounding of the 19-digit objID; obj_id is spec_obj_ID)")
    neg = {c: v for c, v in report["negative_redshift_kept"]["by_class"].items() if v}
    if neg:
        out.append("kept " + ", ".join(f"{v:,} {c}" for c, v in neg.items())
                   + " row(s) with a negative redshift (blueshift, within the per-class range)")
    return out


def summary_lines(result: ImportResult) -> list[str]:
    """Human-readable summary of an import (what the CLI prints to stdout)."""
    rep = result.report
    src = rep["source"]
    lines = []
    if result.verified:
        lines.append(f"verified full release: {src['bytes']:,} bytes, sha256 {src['sha256']}")
    else:
        lines.append(f"not verified: {src['bytes']:,} bytes, sha256 {src['sha256']} (not the published full file)")
    lines.append(f"read {rep['rows_in']:,} rows: " + ", ".join(f"{c} {v:,}" for c, v in rep["classes_in"].items()))
    detail = rep["dropped_detail"]
    extra = {
        "missing_value": detail["missing_value_cells_by_column"],
        "non_finite": detail["non_finite_cells_by_column"],
        "magnitude_sentinel": detail["magnitude_sentinel_cells_by_band"],
        "redshift_out_of_range": detail["redshift_out_of_range_by_class"],
    }
    if rep["dropped_total"]:
        lines.append(f"dropped {rep['dropped_total']:,} row{'s' if rep['dropped_total'] != 1 else ''}:")
        for r, v in rep["dropped"].items():
            if v:
                more = extra.get(r)
                cells = f" (cells: {', '.join(f'{k} {n}' for k, n in more.items())})" if more else ""
                where = ", ".join(map(str, rep["dropped_lines"][r][:5])) + (" ..." if v > 5 else "")
                lines.append(f"  {v:,} {r}{cells}; lines {where}")
    else:
        lines.append("dropped 0 rows")
    lines.append(f"kept {rep['rows_out']:,} rows: " + ", ".join(f"{c} {v:,}" for c, v in rep["classes_out"].items()))
    lines.append(f"wrote {result.out / 'catalogue.csv'} and {result.out / 'import.json'}")
    return lines


def import_cli(path: Path, out: Path | None = None) -> int:
    """Entry point of `specllm data import-sdss17`: import, print the summary, warnings to stderr."""
    import sys

    result = import_sdss17(path, out)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in summary_lines(result):
        print(line)
    return 0
