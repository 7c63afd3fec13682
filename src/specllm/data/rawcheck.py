"""Is data/raw the committed embedded source? `make data` and `make reproduce` ask before any stage runs.

    python -m specllm.data.rawcheck [--restore-dvc-file] [--absent-ok]

Why: `dvc repro` treats data.dvc as a data source and silently records whatever data/raw holds now
(50 deleted catalogue rows, a NaN, a truncated file) into data.dvc, and the paper then reports on
that data. So the check compares data/raw's bytes (DVC's directory hash, computed here) with the
data.dvc of git HEAD, not with the working copy, which `dvc repro` may have rewritten.

Exit status: 0 data/raw is the committed source; 1 it is not (or data.dvc differs from HEAD's), with
the fix printed; 3 data/raw is absent (with --absent-ok: 0; `make data` builds it). --restore-dvc-file
puts HEAD's data.dvc back when the working copy differs (what `make data` does before restoring
data/raw). SPECLLM_ALLOW_LOCAL_DATA=1 turns a mismatch into a warning (exit 0): for a deliberate
local build, e.g. a host that cannot reproduce the committed bytes; the paper then rests on it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from specllm import paths
from specllm.data import check_bytes

RAW = paths.rel(paths.RAW)

ALLOW_ENV = "SPECLLM_ALLOW_LOCAL_DATA"
FIX = ("make data  (restores the committed bytes from the DVC cache, the remote, or a rebuild), or by hand:\n"
       "       git checkout HEAD data.dvc && dvc checkout --force data.dvc")


def head_dvc_file(root: Path) -> str | None:
    """data.dvc as git HEAD has it; None outside a git checkout or when HEAD has no data.dvc."""
    try:
        proc = subprocess.run(["git", "show", "HEAD:data.dvc"], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def check(root: Path, restore_dvc_file: bool = False) -> tuple[int, list[str]]:
    """(status, message lines) as documented in the module notes (without the --absent-ok mapping)."""
    dvc_file, raw = paths.at(root, paths.DATA_DVC), paths.at(root, paths.RAW)
    lines: list[str] = []
    head = head_dvc_file(root)
    if head is not None and (not dvc_file.is_file() or dvc_file.read_text() != head):
        if restore_dvc_file:
            subprocess.run(["git", "checkout", "HEAD", "--", paths.rel(paths.DATA_DVC)], cwd=root, check=True, capture_output=True)
            lines.append("data.dvc differed from git HEAD's (dvc repro records a changed data/raw there); restored HEAD's")
        else:
            return 1, ["data.dvc differs from git HEAD's: `dvc repro` recorded a changed data/raw in it (or it was edited).",
                       "  To adopt a new embedded source deliberately, commit data.dvc first (git commit data.dvc).",
                       f"  fix: {FIX}"]
    expect = check_bytes.expected_md5(dvc_file)
    if not raw.is_dir():
        return 3, [*lines, f"{RAW} is absent: `make data` builds it"]
    entries = check_bytes.dir_entries(raw)
    got = check_bytes.dir_md5(entries)
    if got == expect:
        return 0, [*lines, f"{RAW} matches the committed data.dvc ({expect})"]
    committed = {e["relpath"]: e["md5"] for e in check_bytes.cached_entries(paths.at(root, paths.DVC_CACHE), expect) or []}
    here = {e["relpath"]: e["md5"] for e in entries}
    changed = sorted(n for n in set(here) | set(committed) if here.get(n) != committed.get(n)) if committed else []
    what = f" (files that differ: {', '.join(changed)})" if changed else ""
    return 1, [*lines, f"{RAW} is not the committed embedded source: its hash {got} is not data.dvc's {expect}{what}.",
               "  Every stage would run on it and dvc repro would record it in data.dvc.", f"  fix: {FIX}"]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m specllm.data.rawcheck", description=__doc__.splitlines()[0])
    ap.add_argument("--restore-dvc-file", action="store_true", help="put git HEAD's data.dvc back if the working copy differs")
    ap.add_argument("--absent-ok", action="store_true", help="exit 0 when data/raw is absent (make data will build it)")
    args = ap.parse_args(argv)
    status, lines = check(paths.ROOT, args.restore_dvc_file)
    if status == 1 and os.environ.get(ALLOW_ENV):
        lines = [f"WARNING ({ALLOW_ENV} is set): " + lines[0], *lines[1:]]
        status = 0
    if status == 3 and args.absent_ok:
        status = 0
    print(("error: " if status == 1 else "") + "\n".join(lines), file=sys.stderr if status == 1 else sys.stdout)
    sys.exit(status)


if __name__ == "__main__":
    main()
