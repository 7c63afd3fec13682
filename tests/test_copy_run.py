"""conftest.copy_run, which gives each slow module its own copy of a finished smoke run: what a test changes
in its copy (files, params, DVC's locks) never reaches the shared run, and DVC's cache is linked, not copied."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import copy_run


def _finished_run(root: Path) -> Path:
    """The shape of a reproduced clone: tracked files, outputs, git, and a DVC cache of read-only objects."""
    for name, text in {"params.yaml": "k: 10\n", "results/baseline.json": "{}\n", ".git/HEAD": "ref: main\n",
                       ".dvc/config": "[core]\n", ".dvc/config.local": "endpoint\n", ".dvc/tmp/rwlock": "{}\n",
                       ".dvc/cache/files/md5/ab/cdef": "object\n", ".dvc/cache/runs/12/3456/789": "lock\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / ".dvc/cache/files/md5/ab/cdef").chmod(0o444)
    os.utime(root / "params.yaml", (1_000_000_000, 1_000_000_000))
    return root


def test_a_copy_is_independent_and_links_the_cache(tmp_path):
    run = _finished_run(tmp_path / "run")
    copy = copy_run(run, tmp_path / "copy")
    assert (copy / "results/baseline.json").read_text() == "{}\n" and (copy / ".git/HEAD").is_file()
    assert (copy / ".dvc/config.local").read_text() == "endpoint\n"  # a remote endpoint travels with the run
    assert not (copy / ".dvc/tmp").exists()  # DVC's locks stay behind
    assert (copy / "params.yaml").stat().st_mtime == 1_000_000_000  # times kept: make sees nothing newer
    obj = ".dvc/cache/files/md5/ab/cdef"
    assert os.path.samefile(copy / obj, run / obj) and (copy / ".dvc/cache/runs/12/3456/789").is_file()
    (copy / "params.yaml").write_text("k: 5\n")  # a test changes its copy in place
    (copy / "results/baseline.json").unlink()
    assert (run / "params.yaml").read_text() == "k: 10\n" and (run / "results/baseline.json").is_file()
