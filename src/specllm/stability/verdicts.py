"""Verdicts on the headline claims of the SCSE attempt (order stability of SDSS classification).

Contract shared with the report's verdict table (`specllm.verdicts`): each row is a dict with
  key       short id, e.g. "scse.mean_pss"
  study     "scse"
  claim     the original's claim in words (plain text, no TeX)
  original  the original's value as printed (plain text)
  ours      our value with its interval (plain text), or "" when not measured
  verdict   "supported" | "contradicted" | "not testable at this scale"
  reason    one sentence: why this verdict (the decisive numbers, or why the data cannot decide)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

VERDICTS = ("supported", "contradicted", "not testable at this scale")


def stability_verdicts(analysis: Mapping[str, Any], reprobe: Mapping[str, Any],
                       reference: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per SCSE headline claim (mean PSS 0.0916, STAR most sensitive, K = 2 for every
    object, DPO lowers PSS 0.139 -> 0.073 without losing accuracy). Placeholder until the
    stability study decides them from its intervals and null baselines."""
    return []
