"""Entry point of a subprocess workload: python -m specllm.bench.isolated MODULE ARGS_JSON OUT_JSON."""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path

from specllm.machine import peak_rss_bytes


def main() -> None:
    module, args, out = sys.argv[1], json.loads(sys.argv[2]), Path(sys.argv[3])
    import torch  # the baseline every variant pays alike

    baseline = peak_rss_bytes()
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    result = importlib.import_module(f"specllm.bench.{module}").isolated(**args)
    result["peak_rss_bytes"] = peak_rss_bytes()
    # On a GPU the memory that matters is the device's: the most torch's allocator held at once.
    result["cuda_peak_bytes"] = int(torch.cuda.max_memory_allocated()) if cuda else None
    result["ru_maxrss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # inherits the parent's, see specllm.machine
    result["baseline_rss_bytes"] = baseline  # after importing torch, before any model
    out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
