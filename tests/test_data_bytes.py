"""data/raw's bytes do not depend on the CPU, and a changed data/raw never reaches the pipeline.

Another host's code paths cannot run here, so robustness is shown by perturbing the float computation:
relative noise of 1e-12 on the fit inputs and simulated values (build_raw --perturb), one BLAS/OpenMP
thread, numpy's SIMD dispatch switched off (the widest levels this CPU has, then all of them) and
OpenBLAS forced to older kernels; every variant must give the bytes data.dvc records.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, VENV, fresh_copy, run_in

from specllm import config
from specllm.data import catalogue, check_bytes, exact, galaxies, rawcheck
from specllm.data import raw as build_raw
from specllm.errors import InputError

LIMIT = 300
PERTURB = 1e-12


def _md5s(folder: Path) -> dict[str, str]:
    return {e["relpath"]: e["md5"] for e in check_bytes.dir_entries(folder)}


def _dispatch_levels() -> list[str]:
    """numpy's SIMD dispatch targets this CPU runs, narrowest first (e.g. X86_V3, X86_V4, AVX512_ICL)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # numpy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def _without_widest(levels: list[str]) -> list[str]:
    """The AVX-512 levels (what the authors' host has and a plain AVX2 host lacks); else the widest one."""
    wide = [n for n in levels if "512" in n or n.endswith("V4")]
    return wide or levels[-1:]


# ---------------------------------------------------------------- rounding and exact functions


def test_quantize_bits_keeps_bits_and_reports_the_distance_to_a_boundary():
    # 16 bits: grid 2^-15 in [1, 2); 1 + 2^-16 and 1 + 3 * 2^-16 are ties (half to even), 1 + 2^-17 a quarter step
    x = np.array([1.0, 1.0 + 2.0**-16, 1.0 + 3 * 2.0**-16, 1.0 + 2.0**-17, -3.0, 0.0, np.nan])
    q, margin = exact.quantize_bits(x, 16)
    np.testing.assert_array_equal(q[:6], [1.0, 1.0, 1.0 + 2.0**-14, 1.0, -3.0, 0.0])
    assert np.isnan(q[6])
    np.testing.assert_array_equal(margin, [0.5, 0.0, 0.0, 0.25, 0.5, 0.5, 0.5])
    # every rounded value is exactly on its grid, within half a step of the input
    y = np.random.default_rng(0).lognormal(0.0, 5.0, 1000)
    qy, _ = exact.quantize_bits(y, 16)
    assert np.all(np.abs(qy / y - 1.0) <= 2.0**-16)
    assert np.array_equal(exact.quantize_bits(qy, 16)[0], qy)


def test_quantize_step_rounds_to_the_grid():
    q, margin = exact.quantize_step(np.array([18.12344, 18.12346, 20.0, np.inf]), 1e-4)
    assert [f"{v:.5f}" for v in q[:3]] == ["18.12340", "18.12350", "20.00000"]
    assert margin[0] == pytest.approx(0.1, abs=1e-6) and margin[2] == pytest.approx(0.5) and q[3] == np.inf


def test_exact_functions_agree_with_numpy():
    x = np.random.default_rng(1).uniform(0.5, 3.0, 200)
    np.testing.assert_allclose(exact.log10(x), np.log10(x), rtol=1e-15)
    np.testing.assert_allclose(exact.pow10(x), 10.0**x, rtol=1e-15)
    np.testing.assert_allclose(exact.exp(-x), np.exp(-x), rtol=1e-15)
    np.testing.assert_allclose(exact.power(x, 2.5), x**2.5, rtol=1e-15)


# ---------------------------------------------------------------- the fit


def test_nnls_finds_scipys_optimum():
    from scipy.optimize import nnls

    rng = np.random.default_rng(2)
    A = rng.uniform(0.0, 1.0, (300, 5, 5))
    b = np.einsum("nij,nj->ni", A, rng.uniform(-0.5, 1.0, (300, 5))) + rng.normal(0, 0.05, (300, 5))
    ours = galaxies.nnls(A, b)
    for n in range(300):
        ref, rnorm = nnls(A[n], b[n])
        chi_ours = float(np.sum((A[n] @ ours[n] - b[n]) ** 2))
        assert chi_ours <= rnorm**2 * (1 + 1e-8) + 1e-20
        np.testing.assert_allclose(ours[n], ref, atol=1e-7)
    assert (ours >= 0).all() and (ours == 0).any()  # the constraint binds somewhere


def test_nnls_picks_the_sparser_of_equally_good_solutions():
    """A band without weight leaves 4 equations for 5 templates: many exact fits; the sparsest wins,
    whatever the rounding noise (which decided kcorrect's choice)."""
    rng = np.random.default_rng(3)
    A = rng.uniform(0.1, 1.0, (50, 5, 5))
    A[:, 4, :] = 0.0
    b = np.einsum("nij,nj->ni", A, rng.uniform(0.1, 1.0, (50, 5)))
    c = galaxies.nnls(A, b)
    assert ((c > 0).sum(axis=1) <= 4).all()
    np.testing.assert_allclose(np.einsum("nij,nj->ni", A, c), b, rtol=1e-9, atol=1e-12)


def test_design_matrix_matches_kcorrect():
    z = np.array([0.0, 0.05, 0.1, 0.2, 0.3, 0.45], np.float32).astype(np.float64)
    ours = galaxies.design_matrix(z)
    kc = galaxies.fitter(0.5)
    ref = np.array([kc.Amatrix(np.float32(v)) for v in z])
    assert np.max(np.abs(ours / ref - 1.0)) < 0.003  # kcorrect: float32, linear in z on a 0.002 grid
    with pytest.raises(ValueError, match="0 <= z"):
        galaxies.design_matrix(np.array([1.5]))


# ---------------------------------------------------------------- perturbed builds


@pytest.fixture(scope="module")
def subset_builds(tmp_path_factory):
    params = config.load(ROOT / "params.yaml")
    out = {}
    for name, rel in (("plain", 0.0), ("perturbed", PERTURB)):
        margins: dict = {}
        folder = tmp_path_factory.mktemp(name) / "raw"
        build_raw.build(folder, params, limit=LIMIT, progress=False, perturb=rel, margins=margins)
        out[name] = (folder, margins)
    return out


def test_relative_noise_of_1e12_leaves_every_byte(subset_builds):
    (plain, _), (perturbed, _) = subset_builds["plain"], subset_builds["perturbed"]
    assert _md5s(plain) == _md5s(perturbed)


def test_rounding_margins_exceed_the_injected_noise(subset_builds):
    """The explicit check behind the rounding: no rounded value lies within reach of the injected noise
    (6 sigma of 1e-12 relative is 6e-12 * 2^FIT_BITS grid steps for the fit inputs; 6e-12 * 30 mag / 1e-4 and
    6e-12 * z / 1e-6 for the simulated values), so neither it nor another CPU's ~1e-16 can flip one."""
    for _, margins in subset_builds.values():
        assert margins["fit_inputs"] > 6 * PERTURB * 2.0**galaxies.FIT_BITS
        assert margins["catalogue_simulated"] > 6 * PERTURB * max(30.0 / catalogue.MAG_STEP, 6.0 / catalogue.Z_STEP)


def _build_cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "specllm.data.check_bytes", "--out", str(out), "--expect", str(ROOT / "data.dvc"), *extra]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), **extra}


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["no-avx512+haswell+1thread+perturbed", "no-simd-dispatch+sandybridge"])
def test_full_build_gives_data_dvc_bytes_under_other_numerics(tmp_path, variant):
    """The full build, run as the cross-machine check runs it, gives the committed data.dvc's bytes with
    numpy's widest SIMD kernels off (what an AVX2-only host runs), or all of them, other OpenBLAS kernels,
    one thread, and 1e-12 noise on the fit inputs; and the rounding margins exceed that noise."""
    levels = _dispatch_levels()
    if variant.startswith("no-avx512"):
        env = _env(NPY_DISABLE_CPU_FEATURES=" ".join(_without_widest(levels)), OPENBLAS_CORETYPE="Haswell",
                   OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        extra = ("--perturb", str(PERTURB))
    else:
        env, extra = _env(NPY_DISABLE_CPU_FEATURES=" ".join(levels), OPENBLAS_CORETYPE="Sandybridge"), ()
    proc = subprocess.run(_build_cmd(tmp_path / "raw", *extra), cwd=ROOT, env=env, text=True, capture_output=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IDENTICAL bytes" in proc.stdout


# ---------------------------------------------------------------- the cross-machine check command


def test_dir_hash_is_dvcs(tmp_path):
    from dvc_data.hashfile.hash_info import HashInfo
    from dvc_data.hashfile.meta import Meta
    from dvc_data.hashfile.tree import Tree

    (tmp_path / "b.npy").write_bytes(b"\x93NUMPY")
    (tmp_path / "a.csv").write_text("x\n1\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.json").write_text("{}\n")
    tree = Tree()
    for p in sorted(q for q in tmp_path.rglob("*") if q.is_file()):
        tree.add(p.relative_to(tmp_path).parts, Meta(size=p.stat().st_size), HashInfo("md5", hashlib.md5(p.read_bytes()).hexdigest()))
    tree.digest()
    assert check_bytes.dir_md5(check_bytes.dir_entries(tmp_path)) == tree.hash_info.value


def test_check_bytes_compares_a_folder_with_data_dvc(tmp_path, capsys):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("x\n1\n")
    md5 = check_bytes.dir_md5(check_bytes.dir_entries(raw))
    dvc_file = tmp_path / "data.dvc"
    dvc_file.write_text(f"outs:\n- md5: {md5}\n  size: 4\n  nfiles: 1\n  hash: md5\n  path: data/raw\n")
    for content, status in (("x\n1\n", 0), ("x\n2\n", 1)):
        (raw / "a.csv").write_text(content)
        with pytest.raises(SystemExit) as ex:
            check_bytes.main(["--out", str(raw), "--expect", str(dvc_file), "--no-build", "--cache", str(tmp_path / "none")])
        assert ex.value.code == status
    assert "DIFFERENT bytes" in capsys.readouterr().out
    dvc_file.write_text("outs:\n- path: data/raw\n")
    with pytest.raises(InputError, match="outs\\[0\\].md5"):
        check_bytes.expected_md5(dvc_file)


def test_check_bytes_defaults_to_the_projects_files_from_any_directory(tmp_path, monkeypatch, capsys):
    """Run from another directory, the defaults are the project's data.dvc and DVC cache (paths), not the
    working directory's: a folder holding the project's data/raw bytes compares as identical."""
    from specllm import paths

    project = tmp_path / "proj"
    raw = project / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "a.csv").write_text("x\n1\n")
    md5 = check_bytes.dir_md5(check_bytes.dir_entries(raw))
    (project / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  size: 4\n  nfiles: 1\n  hash: md5\n  path: data/raw\n")
    for name, value in {"DATA_DVC": project / "data.dvc", "DVC_CACHE": project / ".dvc" / "cache"}.items():
        monkeypatch.setattr(paths, name, value)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data/raw\n")
    monkeypatch.chdir(elsewhere)
    with pytest.raises(SystemExit) as ex:
        check_bytes.main(["--out", str(raw), "--no-build"])
    assert ex.value.code == 0, capsys.readouterr().out
    assert "IDENTICAL bytes" in capsys.readouterr().out


# ---------------------------------------------------------------- a changed data/raw stops the run


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def tracked(tmp_path) -> Path:
    """A git checkout whose data.dvc records a small data/raw."""
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    (raw / "catalogue.csv").write_text("obj_id,class\nG00001,GALAXY\nS00000,STAR\n")
    (raw / "manifest.json").write_text("{}\n")
    md5 = check_bytes.dir_md5(check_bytes.dir_entries(raw))
    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {md5}\n  size: 1\n  nfiles: 2\n  hash: md5\n  path: data/raw\n")
    (tmp_path / ".gitignore").write_text("/data/raw\n")
    for args in (("init", "-q"), ("add", "-A"), ("commit", "-qm", "data")):
        _git(tmp_path, *args)
    return tmp_path


def test_rawcheck_accepts_the_committed_source_only(tracked):
    assert rawcheck.check(tracked)[0] == 0
    (tracked / "data" / "raw" / "catalogue.csv").write_text("obj_id,class\nG00001,GALAXY\n")  # a deleted row
    status, lines = rawcheck.check(tracked)
    assert status == 1 and "not the committed embedded source" in lines[0] and "make data" in "\n".join(lines)
    shutil.rmtree(tracked / "data" / "raw")
    assert rawcheck.check(tracked)[0] == 3


def test_rawcheck_compares_with_git_head_not_a_rewritten_data_dvc(tracked):
    """What dvc repro does to a changed data/raw: records it in data.dvc. The check still refuses it,
    and --restore-dvc-file (make data) puts HEAD's data.dvc back."""
    raw = tracked / "data" / "raw"
    (raw / "catalogue.csv").write_text("obj_id,class\nG00001,GALAXY\n")
    committed = (tracked / "data.dvc").read_text()
    rewritten = committed.replace(check_bytes.expected_md5(tracked / "data.dvc"), check_bytes.dir_md5(check_bytes.dir_entries(raw)))
    (tracked / "data.dvc").write_text(rewritten)
    status, lines = rawcheck.check(tracked)
    assert status == 1 and "git HEAD" in lines[0] and "git checkout HEAD data.dvc" in "\n".join(lines)
    status, lines = rawcheck.check(tracked, restore_dvc_file=True)
    assert (tracked / "data.dvc").read_text() == committed
    assert status == 1 and "restored HEAD's" in lines[0]


@pytest.mark.slow
def test_make_reproduce_stops_and_make_data_recovers_a_changed_data_raw(tmp_path, monkeypatch):
    """The sweep's fault: 50 deleted catalogue rows went through `make reproduce` silently, and after
    `dvc repro` recorded a broken data/raw in data.dvc, `make data` said "nothing to build" forever."""
    repo = fresh_copy(tmp_path / "clone")
    monkeypatch.setenv("PYTHONPATH", str(repo / "src"))  # the clone's code, whatever the caller's PYTHONPATH
    shutil.copytree(ROOT / "data" / "raw", repo / "data" / "raw")  # the committed bytes (checked below)
    make = ["make", f"VENV={VENV}", f"--assume-old={VENV}/.installed"]
    assert "nothing to build" in run_in([*make, "data"], repo).stdout
    committed = (repo / "data.dvc").read_text()

    cat = repo / "data" / "raw" / "catalogue.csv"
    cat.write_text("".join(cat.read_text().splitlines(keepends=True)[:-50]))
    proc = subprocess.run([*make, "reproduce", "PROFILE=smoke"], cwd=repo, text=True, capture_output=True, timeout=600,
                          env={**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", "SPECLLM_ROOT": str(repo)})
    assert proc.returncode != 0 and "not the committed embedded source" in proc.stderr, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert not (repo / "data" / "prepared").exists() and (repo / "data.dvc").read_text() == committed  # no stage ran

    run_in(["dvc", "commit", "-q", "-f", "data.dvc"], repo)  # what dvc repro does with the changed data/raw
    assert (repo / "data.dvc").read_text() != committed
    out = run_in([*make, "data"], repo).stdout
    assert "built; it matches data.dvc" in out
    assert (repo / "data.dvc").read_text() == committed and rawcheck.check(repo)[0] == 0

    npy = repo / "data" / "raw" / "spectra_flux.npy"  # a truncated file, now restored from the DVC cache
    npy.write_bytes(npy.read_bytes()[:1000])
    run_in(["dvc", "commit", "-q", "-f", "data.dvc"], repo)
    assert "restored from the DVC cache" in run_in([*make, "data"], repo).stdout
    assert (repo / "data.dvc").read_text() == committed and rawcheck.check(repo)[0] == 0
