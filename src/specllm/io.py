"""Small file helpers every stage shares: checked readers, checksums, deterministic JSON, atomic outputs.

Inputs are read with `read_json` / `read_csv`: a missing file, bad JSON, a missing key or column is an
InputError naming the file, the field and the fix (the caller says which stage to rerun).
Outputs are built in a temporary sibling and renamed into place, so a stage that fails half-way
never leaves a torn output and never clobbers the previous good one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specllm.errors import InputError, clip

if TYPE_CHECKING:
    import pandas as pd


def _check_file(path: Path, fix: str) -> None:
    if not path.is_file():
        raise InputError(path, "-", "file not found", fix)


def read_json(path: str | Path, fix: str, *, kind: type | None = dict, required: Sequence[str] = ()) -> Any:
    """The JSON in `path`, checked: InputError (file, field, fix) when the file is missing, is not valid
    JSON (field: the line), its top level is not a `kind` (None: anything), or a dotted key of
    `required` ('a.b' for data['a']['b']) is missing. `fix` says how to get a good file."""
    path = Path(path)
    _check_file(path, fix)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, f"line {err.lineno}", f"not valid JSON ({err.msg})", fix) from None
    except UnicodeDecodeError as err:
        raise InputError(path, "-", f"not UTF-8 text ({err.reason} at byte {err.start})", fix) from None
    if kind is not None and not isinstance(data, kind):
        raise InputError(path, "-", f"top level is a JSON {type(data).__name__}, expected {_JSON_NAMES.get(kind, kind)}",
                         fix)
    for key in required:
        field(data, key, path, fix)
    return data


_JSON_NAMES = {dict: "an object", list: "an array"}


def field(data: Any, dotted: str, path: str | Path, fix: str, *, types: type | tuple = object) -> Any:
    """data['a']['b'] for 'a.b', or an InputError naming the file and the key (missing, or not of `types`)."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise InputError(path, dotted, "key missing", fix)
        node = node[part]
    allowed = types if isinstance(types, tuple) else (types,)
    if types is not object and (not isinstance(node, types) or (isinstance(node, bool) and bool not in allowed)):
        raise InputError(path, dotted, f"unexpected value {clip(node)} (expected {' or '.join(t.__name__ for t in allowed)})",
                         fix)
    return node


def read_csv(path: str | Path, fix: str, columns: Sequence[str] = (), *, nonempty: bool = False,
             **options: Any) -> pd.DataFrame:
    """pandas.read_csv(path, **options), checked: InputError (file, field, fix) when the file is missing,
    a column of `columns` is missing (field: the columns), or, with nonempty, it has no rows."""
    import pandas as pd

    path = Path(path)
    _check_file(path, fix)
    try:
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise InputError(path, "-", "empty file (no header line)", fix) from None
    except pd.errors.ParserError as err:
        raise InputError(path, "-", f"not a valid CSV table ({str(err).strip()})", fix) from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InputError(path, ", ".join(missing),
                         f"column missing (found: {', '.join(map(str, frame.columns))})", fix)
    if nonempty and frame.empty:
        raise InputError(path, "-", "no rows", fix)
    return frame


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def json_text(obj: Any) -> str:
    """Deterministic JSON: sorted keys, two-space indent, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any) -> None:
    """Write JSON to path via a temporary file and rename (never leaves a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(json_text(obj))
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; on success it replaces `out` in one rename.

    On any exception the temporary folder is removed and an earlier `out` stays untouched.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the usual permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        old.rmdir()
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old, out)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | Path, text: str) -> None:
    """Write text via a temporary file and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
