"""Stage `environment`: record the software and hardware the pipeline ran on.

Writes results/environment.json: Python, platform, CPU model and cores, torch (version, threads,
CUDA, GPUs with capability and driver), the exact installed versions of every dependency that
pyproject.toml pins (with the pin beside it; torch's from the lock in use), and the sha256 of the
lock the environment was installed from (requirements.lock, or requirements/cuda.lock in the image).
Sorted keys, no timestamps, no host names or user names: the same machine and stack give the
same bytes. The paper's appendix renders it (report stage). The facts come from
specllm.envkey.collect_environment (software) and specllm.machine (hardware).

    python -m specllm.stages.environment
"""

from __future__ import annotations

import sys

from specllm import paths
from specllm.envkey import active_lock, collect_environment
from specllm.io import write_json
from specllm.runner import run_main


def main() -> None:
    out = paths.ENVIRONMENT
    env = collect_environment(paths.ROOT / "pyproject.toml", active_lock(paths.ROOT))
    write_json(out, env)
    missing = [n for n, v in env["packages"].items() if v["installed"] is None]
    mismatch = [n for n, v in env["packages"].items()
                if v["installed"] and v["pinned"] and v["installed"].split("+")[0] != v["pinned"]]
    print(f"wrote {paths.shown(out)}: "
          f"python {env['python']['version']}, torch {env['torch']['version']} "
          f"({env['torch'].get('build', '-')} build, {env['lock_file']}), "
          f"{len(env['packages'])} dependencies")
    if missing:
        print(f"warning: not installed: {', '.join(missing)}", file=sys.stderr)
    if mismatch:
        print(f"warning: installed version differs from the pin: {', '.join(mismatch)}", file=sys.stderr)


if __name__ == "__main__":
    run_main(main)
