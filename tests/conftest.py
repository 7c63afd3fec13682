"""Shared fixtures. Tests run from any folder; ROOT is the repository under test."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
# The real SDSS17 sample lives beside the checkout (never inside it): ../shared/data/sdss17/.
SHARED_SDSS17 = ROOT.parent / "shared" / "data" / "sdss17" / "star_classification_sample10k.csv"

# Tests create git repositories (DVC needs one); give them an identity without touching ~/.gitconfig.
for var, value in {"GIT_AUTHOR_NAME": "specllm tests", "GIT_AUTHOR_EMAIL": "tests@specllm.invalid",
                   "GIT_COMMITTER_NAME": "specllm tests", "GIT_COMMITTER_EMAIL": "tests@specllm.invalid"}.items():
    os.environ.setdefault(var, value)
# Idle OpenMP threads sleep instead of spinning (libgomp reads this when torch loads; the stages inherit it). The suite
# runs two or three processes on two cores, and torch's threads spin at the end of each parallel region for a sibling
# that is descheduled: the smoke retention stage beside one busy process took 9.1 s of wall and 9.3 CPU-s spinning,
# 7.0 s and 6.2 CPU-s passive (2026-12-02). Results are unchanged: the same threads split the same work.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def fresh_copy(dest: Path) -> Path:
    """The working tree as a new user clones it: committed and uncommitted files, no outputs, no cache,
    committed to a new git repository (DVC needs one). File times are kept, so make never thinks the
    lock is newer than the shared venv."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "clone"]):
        subprocess.run(cmd, cwd=dest, check=True, capture_output=True)
    return dest


def write_source(folder: Path, n: int = 200, npix: int = 600, seed: int = 0) -> Path:
    """A small source folder in data/raw's format: smooth spectra on SDSS's log-lambda grid."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    loglam = 3.58 + 1e-4 * 6.4 * np.arange(npix)  # coarser steps, same span as SDSS
    wave = 10**loglam
    z = rng.uniform(0.01, 0.5, n)
    slope = rng.uniform(-1, 1, n)
    flux = (5 + slope[:, None] * (wave - 6000) / 3000 + rng.normal(0, 0.1, (n, npix))).astype(np.float32)
    np.save(folder / "loglam.npy", loglam)
    np.save(folder / "spectra_flux.npy", flux)
    np.save(folder / "spectra_ivar.npy", np.full_like(flux, 100.0))
    pd.DataFrame({"gal_id": np.arange(n) + 1000, "ra": 0.0, "dec": 0.0, "z": z}).to_csv(folder / "galaxies.csv", index=False)
    return folder


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_source(tmp_path / "raw")


@pytest.fixture
def params() -> dict:
    """The committed params.yaml, flat (the small profile)."""
    from specllm import config

    return config.load(ROOT / "params.yaml")


VENV = Path(sys.executable).parent.parent


# Commands started by run_in(..., group=True) that are still running, each the leader of its own process group:
# the background runs (the smoke run and its recomputations), which must not outlive a session that ended before
# its tests read them (a collection error, -x, Ctrl-C): _stop_jobs kills them.
GROUPS: set[subprocess.Popen] = set()


def run_in(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True,
           timeout: float = 1800, group: bool = False) -> subprocess.CompletedProcess:
    """Run a command in a clone with the test venv first on PATH and SPECLLM_ROOT set (env: extra variables);
    timeout bounds a hung command (a smoke reproduce takes about 10 minutes). group: in its own process group,
    listed in GROUPS while it runs. subprocess.run, written out only to expose the process for GROUPS."""
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}", "SPECLLM_ROOT": str(cwd), **(env or {})}
    with subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          start_new_session=group) as popen:
        if group:
            GROUPS.add(popen)
        try:
            stdout, stderr = popen.communicate(timeout=timeout)
        except BaseException:
            _stop(popen)
            raise
        finally:
            GROUPS.discard(popen)
    proc = subprocess.CompletedProcess(cmd, popen.returncode, stdout, stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _stop(popen: subprocess.Popen) -> None:
    """Kill a command and, when it leads its own process group, everything it started (make, dvc, the stages)."""
    try:
        if os.getpgid(popen.pid) == popen.pid:
            os.killpg(popen.pid, signal.SIGKILL)
        else:
            popen.kill()
    except ProcessLookupError:
        pass
    popen.wait()


def stages_run(output: str) -> set[str]:
    """The stages a `dvc repro` / `make reproduce` output says it executed."""
    return set(re.findall(r"Running stage '([\w@.-]+)'", output))


def reproduce_smoke(repo: Path, env: dict[str, str] | None = None, group: bool = False) -> Path:
    """`make reproduce PROFILE=smoke` in a fresh clone (never letting make rebuild the shared venv);
    the log goes to reproduce.log and a snapshot of values.json to values.first.json. group: see run_in."""
    proc = run_in(["make", "reproduce", "PROFILE=smoke", f"VENV={VENV}", f"--assume-old={VENV}/.installed"], repo, env=env,
                  group=group)
    (repo / "reproduce.log").write_text(proc.stdout + proc.stderr)
    shutil.copyfile(repo / "paper" / "generated" / "values.json", repo / "values.first.json")
    return repo


def copy_run(src: Path, dest: Path) -> Path:
    """A finished run's own copy, for a test that changes it: the working tree and git copied with their file
    times, the DVC cache (objects and run-cache records) hard-linked (DVC writes each once, by a move, and never
    in place), .dvc/tmp (locks) left for DVC to recreate. Seconds, against minutes for a run."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:  # another file system
            shutil.copy2(a, b)

    def skip(folder: str, names: list[str]) -> list[str]:
        return ["cache", "tmp"] if Path(folder) == src / ".dvc" else []

    shutil.copytree(src, dest, symlinks=True, ignore=skip)
    if (src / ".dvc" / "cache").is_dir():
        shutil.copytree(src / ".dvc" / "cache", dest / ".dvc" / "cache", symlinks=True, copy_function=link)
    return dest


# ---------------------------------------------------------------- the S3 remote the smoke run sees

S3_BUCKET = "specllm-cache"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_environment(home: Path) -> dict[str, str]:
    """Fake credentials only; no file from ~/.aws is read and no metadata service is asked."""
    return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials")}


class MotoServer:
    """A moto S3 server on 127.0.0.1 with the project's bucket (empty until test_remote pushes), started and
    stopped by its PID."""

    def __init__(self, folder: Path, aws_env: dict[str, str]):
        port = free_port()
        self.log = (folder / "server.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     env={**os.environ, **aws_env}, stdout=self.log, stderr=subprocess.STDOUT)
        self.endpoint = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
                    break
                except OSError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"moto server did not start (exit {self.proc.poll()}); see {self.log.name}") from None
                    time.sleep(0.3)
            import boto3

            boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                         region_name="us-east-1").create_bucket(Bucket=S3_BUCKET)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def aws_env(tmp_path_factory) -> dict[str, str]:
    return EARLY["aws_env"] if "aws_env" in EARLY else aws_environment(tmp_path_factory.mktemp("aws"))


@pytest.fixture(scope="session")
def s3(aws_env, tmp_path_factory) -> str:
    """The endpoint URL of the session's MotoServer (the one pytest_sessionstart started, if it did)."""
    if "s3" in EARLY:
        yield EARLY["s3"].endpoint
        return
    server = MotoServer(tmp_path_factory.mktemp("moto"), aws_env)
    try:
        yield server.endpoint
    finally:
        server.stop()


def use_remote(repo: Path, endpoint: str) -> None:
    """What a user does once per machine: point the committed remote at an endpoint, outside git."""
    run_in(["dvc", "remote", "modify", "--local", "specllm", "endpointurl", endpoint], repo)
    assert "endpointurl" not in (repo / ".dvc" / "config").read_text()


def perturbed_env() -> dict[str, str]:
    """Another reviewer's CPU, imitated (this machine's cannot be swapped): one thread everywhere (other
    reduction orders in OpenMP, OpenBLAS and torch), OpenBLAS's kernels for an older core, numpy's AVX-512
    dispatch switched off, torch's CPU kernels and oneDNN/MKL capped at AVX2: the code paths of an
    AVX2-only host such as the AMD EPYC of issue 13."""
    flags = set(re.findall(r"\w+", next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                                        if ln.startswith("flags")), "")))
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "ATEN_CPU_CAPABILITY": "avx2" if "avx2" in flags else "default",
           "DNNL_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
    if "avx2" in flags:
        env["OPENBLAS_CORETYPE"] = "Haswell"
    elif "avx" in flags:
        env["OPENBLAS_CORETYPE"] = "Sandybridge"
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    off = [f for f in __cpu_dispatch__ if f.startswith(("X86_V4", "AVX512")) and __cpu_features__.get(f)]
    if off:
        env["NPY_DISABLE_CPU_FEATURES"] = " ".join(off)
    return env




# ---------------------------------------------------------------- the suite's one pipeline run, and its copies

# The fixtures that read the suite's pipeline run. Tests that use one (directly or through another fixture) run
# last (pytest_collection_modifyitems), while the run is built in the background from the session's start
# (pipeline_in_background): the rest of the suite, mostly one core's Python, runs beside it. Among them, file
# order. Running the smoke_repo readers (test_pipeline, test_remote: DVC commands of their own) beside the bf16
# and perturbed copies instead of after them puts three or four streams on two cores: measured in fresh clones,
# `.ci/run` took 16 min 9 s either way (25.3 CPU-minutes against 22.9 in file order); on 2026-12-02 18 min 53 s
# against 18 min 14 s and 22 min 46 s for file order half an hour either side (26.8 CPU-minutes against 26.6
# and 27.1), the part after the smoke run 564 s against 460 s and 636 s. With the recomputations niced:
# 14 min 58 s against 13 min 32 s (the niced copies then finished last, alone).
SMOKE_FIXTURES = frozenset({"smoke_repo", "recomputations", "recomputed_run", "perturbed_run", "bf16_run"})


def needs_smoke(item: pytest.Item) -> bool:
    return bool(SMOKE_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=needs_smoke)  # stable: file order within each group


# What pytest_sessionstart started before collection when the whole suite runs: "aws_env", "s3" (a MotoServer)
# and "smoke" (the future of the smoke run), adopted by the fixtures of the same names.
EARLY: dict = {}


def whole_suite(config: pytest.Config) -> bool:
    """Plain `pytest` (make test): testpaths, no -k, -m, --deselect or --lf, and no reused run. The smoke-run
    readers are then certainly selected, so the run can start before collection."""
    o = config.option
    return (config.args_source == pytest.Config.ArgsSource.TESTPATHS and not o.keyword and not o.markexpr
            and not o.deselect and not getattr(o, "lf", False) and not o.collectonly
            and not os.environ.get("SPECLLM_SMOKE_REPO"))


def pytest_sessionstart(session: pytest.Session) -> None:
    """Start the smoke run before collection when the whole suite runs: collecting imports every test module
    (torch, transformers, DVC) on one core for 25-50 s, time the run then has the other core to itself."""
    if not whole_suite(session.config):
        return
    factory = session.config._tmp_path_factory  # what the tmp_path_factory fixture returns; no fixture runs yet
    session.config.add_cleanup(_stop_early)
    EARLY["aws_env"] = aws_environment(factory.mktemp("aws"))
    EARLY["s3"] = MotoServer(factory.mktemp("moto"), EARLY["aws_env"])
    EARLY["pool"] = ThreadPoolExecutor(max_workers=1)
    EARLY["smoke"] = EARLY["pool"].submit(_smoke_run, factory.mktemp("clone") / "specllm", EARLY["s3"].endpoint,
                                          EARLY["aws_env"])


def _stop_early() -> None:
    """At pytest_unconfigure, after every fixture's teardown: a smoke run nothing waited for (the session ended
    early) is killed, then the server stops."""
    if "pool" in EARLY:
        _stop_jobs([EARLY["smoke"]])
        EARLY["pool"].shutdown(wait=True)
    if "s3" in EARLY:
        EARLY["s3"].stop()
    EARLY.clear()


@pytest.fixture(scope="session", autouse=True)
def pipeline_in_background(request, tmp_path_factory):
    """{"smoke": future, "bf16"/"perturbed"/"recomputed": futures} when a collected test needs the pipeline run,
    else None. The smoke run starts with the session (before collection when the whole suite runs: EARLY); the
    three recomputations (see `recomputations`) start two at a time as soon as it is done. Folders are made
    here, in the main thread; the threads only fill them."""
    if not any(needs_smoke(i) for i in request.session.items):
        yield None
        return
    reuse = os.environ.get("SPECLLM_SMOKE_REPO")
    from specllm.precision import FORCE_BF16_ENV

    # In the order the test modules (alphabetical) first wait for them: test_bf16_cpu, test_verify_perturbed,
    # test_verify_smoke.
    jobs = {"bf16": (BF16_STAGES, {FORCE_BF16_ENV: "1"}), "perturbed": (RECOMPUTED, perturbed_env()),
            "recomputed": (RECOMPUTED, None)}
    wanted = set().union(*(i.fixturenames for i in request.session.items if needs_smoke(i)))
    jobs = {name: job for name, job in jobs.items() if f"{name}_run" in wanted}  # only what the selection reads
    dests = {name: tmp_path_factory.mktemp(name) / "specllm" for name in jobs}
    with ThreadPoolExecutor(max_workers=1) as first, ThreadPoolExecutor(max_workers=2) as pool:
        if "smoke" in EARLY:
            smoke = EARLY["smoke"]
        elif reuse:
            smoke = first.submit(Path, reuse)
        else:
            clone = tmp_path_factory.mktemp("clone") / "specllm"
            smoke = first.submit(_smoke_run, clone, request.getfixturevalue("s3"), request.getfixturevalue("aws_env"))
        futures = {name: pool.submit(lambda d=dests[name], s=stages, e=env: _recompute(plain_copy(smoke.result(), d),
                                                                                        s, e))
                   for name, (stages, env) in jobs.items()}
        yield {"smoke": smoke, **futures}
        _stop_jobs([smoke, *futures.values()])  # a session that ended early (-x, Ctrl-C) does not wait for them


def _stop_jobs(futures: list) -> None:
    """Cancel the jobs not started and kill the commands of those running (each runs its commands with
    run_in(group=True), one at a time), until every job is done; nothing to do when all are."""
    for future in futures:
        future.cancel()
    while not all(future.done() for future in futures):
        for popen in list(GROUPS):
            _stop(popen)
        time.sleep(0.1)


def _smoke_run(clone: Path, endpoint: str, aws_env: dict[str, str]) -> Path:
    repo = fresh_copy(clone)
    use_remote(repo, endpoint)
    return reproduce_smoke(repo, env=aws_env, group=True)


@pytest.fixture(scope="session")
def smoke_repo(pipeline_in_background) -> Path:
    """The suite's one full pipeline: a clean clone reproduced on smoke from scratch with its own DVC cache
    while the (empty) S3 remote is reachable, so `make reproduce` runs `dvc repro --pull`, finds nothing and
    computes every stage (test_remote pushes a copy of it). Every other run is a copy of it that recomputes
    some stages (force_stages): a whole pipeline costs the suite 8-10 minutes, a copy seconds. Never changed
    by a test (.dvc/config.local holds the endpoint; plain_copy drops it). SPECLLM_SMOKE_REPO=<folder> reuses
    a clone already reproduced from this tree (with values.first.json) instead."""
    return pipeline_in_background["smoke"].result()


def plain_copy(src: Path, dest: Path) -> Path:
    """A copy of a finished run as a clone without a remote endpoint has it (make runs plain `dvc repro`)."""
    repo = copy_run(src, dest)
    (repo / ".dvc" / "config.local").unlink(missing_ok=True)
    return repo


# Every stage that computes from the model or the data, one of each kind (the other trainings, evaluations
# and retention runs are the same code with other params), in pipeline order.
RECOMPUTED = ("model", "prepare", "serialize", "baseline", "train_default", "evaluate_default", "retention_default",
              "stability_sample", "stability_warmup", "stability_probe", "stability_analyze", "stability_dpo",
              "stability_reprobe", "verdicts", "report")
# One stage of each kind that loads the model (preflight-gated: each is told its dtype), in pipeline order.
BF16_STAGES = ("train_default", "evaluate_default", "retention_default", "demo", "stability_warmup",
               "stability_probe", "stability_dpo", "stability_reprobe")


def force_stages(repo: Path, stages: tuple[str, ...], env: dict[str, str] | None = None) -> str:
    """Run each stage again from its inputs, in the order given (--force: neither the DVC cache nor the run cache
    answers; --single-item: DVC runs exactly the targets, in the order named), then `dvc repro` for whatever reads
    what changed, the paper last; all under env. One DVC process for the forced stages, not one each: DVC's own
    start-up and graph costs 1.5-2 s of CPU per call. Returns the joined log (also written beside the repository
    as recompute.log); a failing stage raises with its output."""
    log = ""
    for cmd in (["dvc", "repro", "--force", "--single-item", *stages], ["dvc", "repro"]):
        proc = run_in(cmd, repo, env=env, group=True)
        log += proc.stdout + proc.stderr
    (repo.parent / "recompute.log").write_text(log)
    return log


def _recompute(repo: Path, stages: tuple[str, ...], env: dict[str, str] | None) -> Path:
    log = run_in([str(VENV / "bin" / "specllm"), "preflight", "--profile", "smoke"], repo, env=env, group=True).stdout
    (repo.parent / "preflight.log").write_text(log)
    force_stages(repo, stages, env)
    return repo


@pytest.fixture(scope="session")
def recomputations(pipeline_in_background, smoke_repo):
    """The three copies of smoke_repo that recompute stages, started by pipeline_in_background as soon as the
    smoke run is done and run two at a time beside the tests: each is mostly one core's Python (DVC, imports,
    the tiny model). Tests wait for the one they read.
    - bf16: BF16_STAGES forced to bf16 on the CPU, as on an Ampere GPU (test_bf16_cpu);
    - perturbed: RECOMPUTED under perturbed_env, another CPU's numerics (test_verify_perturbed, make verify);
    - recomputed: RECOMPUTED again on this machine (bitwise reproducibility, test_verify_smoke).
    Each job writes preflight.log and recompute.log beside its repository; a failed one raises in the test."""
    return pipeline_in_background


@pytest.fixture(scope="session")
def recomputed_run(recomputations) -> Path:
    """A plain copy of smoke_repo whose computing stages ran again from their inputs, on this machine."""
    return recomputations["recomputed"].result()


@pytest.fixture(scope="session")
def perturbed_run(recomputations) -> Path:
    """Another CPU's run: a plain copy of smoke_repo whose computing stages (RECOMPUTED) ran again under
    perturbed_env, then everything that reads them. test_verify_perturbed verifies it within tolerance against
    the committed frozen values; test_verify_smoke runs `make verify` on a copy. The six other trainings and
    their evaluations keep smoke_repo's values (the same code as the recomputed one)."""
    return recomputations["perturbed"].result()


@pytest.fixture(scope="session")
def bf16_run(recomputations) -> Path:
    """A plain copy of smoke_repo whose model-loading stages (BF16_STAGES) ran again in bf16 on the CPU."""
    return recomputations["bf16"].result()
