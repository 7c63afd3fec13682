"""Build data/raw on this machine and compare its bytes with the committed data.dvc, without DVC.

    PYTHONPATH=src python -m specllm.data.check_bytes --out /tmp/raw --expect data.dvc

For another CPU (the GPU machine, a reviewer's host): needs only python3 with the pinned numpy, scipy,
pandas, astropy, kcorrect, speclite, ruamel.yaml and tqdm (requirements.lock), and this checkout's src
on PYTHONPATH. It prints each file's md5 and the directory hash computed as DVC computes it (md5 of
the JSON list of {"md5", "relpath"} sorted by relpath, json.dumps(sort_keys=True), plus ".dir"), then
whether that equals data.dvc's `md5:`. When the DVC cache holds the committed .dir manifest
(.dvc/cache/files/md5/<2>/<30>.dir), it also names the files that differ. Exit status 0: identical
bytes; 1: they differ; 2: bad input. --no-build compares an existing folder instead of building.
Package versions are part of manifest.json, so another version of one of them changes that file
(and the directory hash) even when the data agree: use the pinned environment.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from specllm import paths
from specllm.errors import InputError
from specllm.runner import run_main


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def dir_entries(folder: Path) -> list[dict[str, str]]:
    """DVC's .dir manifest of a folder: [{"md5", "relpath"}] sorted by relpath (POSIX separators)."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file())
    entries = [{"md5": file_md5(p), "relpath": p.relative_to(folder).as_posix()} for p in files]
    return sorted(entries, key=lambda e: e["relpath"])


def dir_md5(entries: list[dict[str, str]]) -> str:
    """The hash DVC records for a directory (dvc_data Tree.digest: md5 of json.dumps(sort_keys=True))."""
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def expected_md5(dvc_file: Path) -> str:
    """The `md5:` of the one output a .dvc file records (read as text: no YAML package needed)."""
    if not Path(dvc_file).is_file():
        raise InputError(dvc_file, "-", "file not found", "pass the checkout's data.dvc with --expect")
    found = re.findall(r"^\s*-?\s*md5:\s*([0-9a-f]{32}\.dir)\s*$", Path(dvc_file).read_text(), flags=re.M)
    if len(found) != 1:
        raise InputError(dvc_file, "outs[0].md5", f"expected one directory md5 (<32 hex>.dir), found {found}",
                         "restore it: git checkout HEAD data.dvc")
    return found[0]


def cached_entries(cache: Path, md5: str) -> list[dict[str, str]] | None:
    """The committed .dir manifest from a DVC cache, if this machine has it."""
    path = Path(cache) / "files" / "md5" / md5[:2] / md5[2:]
    return json.loads(path.read_text()) if path.is_file() else None


def compare(folder: Path, expect: str, cache: Path | None = None) -> tuple[bool, list[str]]:
    """(identical, report lines) for `folder` against the expected directory hash."""
    entries = dir_entries(folder)
    got = dir_md5(entries)
    ref = {e["relpath"]: e["md5"] for e in (cached_entries(cache, expect) or [])} if cache else {}
    lines = []
    for e in entries:
        committed = ref.get(e["relpath"], "absent")
        mark = "" if not ref else ("  same" if committed == e["md5"] else f"  DIFFERS (committed {committed})")
        lines.append(f"  {e['md5']}  {e['relpath']}{mark}")
    lines += [f"  {'(absent here)':32}  {name}  committed {md5}" for name, md5 in sorted(ref.items())
              if name not in {e["relpath"] for e in entries}]
    ok = got == expect
    lines.append(f"directory hash {got} vs data.dvc {expect}: " + ("IDENTICAL bytes" if ok else "DIFFERENT bytes"))
    return ok, lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m specllm.data.check_bytes", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder to build into (replaced) or, with --no-build, to check")
    ap.add_argument("--expect", type=Path, default=paths.DATA_DVC, help="the committed data.dvc (default: the project's)")
    ap.add_argument("--params", type=Path, default=paths.PARAMS, help="parameter file (default: the project's params.yaml)")
    ap.add_argument("--cache", type=Path, default=paths.DVC_CACHE,
                    help="DVC cache with the committed .dir manifest, if any (default: the project's)")
    ap.add_argument("--no-build", action="store_true", help="compare an existing folder; do not build")
    ap.add_argument("--perturb", type=float, default=0.0, help="tests only: build_raw --perturb (e.g. 1e-12); the bytes must not change")
    args = ap.parse_args(argv)
    expect = expected_md5(args.expect)
    if not args.no_build:
        from specllm import config
        from specllm.data import raw as build_raw

        t0 = time.perf_counter()
        margins: dict = {}
        build_raw.build(args.out, config.load(args.params), progress=False, perturb=args.perturb, margins=margins)
        print(f"built {args.out} in {time.perf_counter() - t0:.1f} s; rounding margins (grid steps): "
              + ", ".join(f"{k} {v:.3g}" for k, v in sorted(margins.items())))
    elif not args.out.is_dir():
        raise InputError(args.out, "-", "folder not found", "build it first, or leave out --no-build")
    ok, lines = compare(args.out, expect, args.cache)
    print("\n".join(lines))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    run_main(main)
