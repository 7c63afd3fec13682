"""Read the predicted redshift out of a model's generation.

The fine-tuning target is ``"Redshift: 0.123"``. A generation parses when it contains
``Redshift:`` (any letter case) followed by a plain decimal number (optional sign, digits, an
optional fraction), and that number is not followed by more digits, a second decimal point or an
exponent (``"Redshift: 0.1.2"`` and ``"Redshift: 1e-3"`` do not parse). The first such occurrence counts.
Anything else is unparseable: the caller counts it as a failure, it is never dropped silently.
"""

from __future__ import annotations

import math
import re

PREFIX = "Redshift: "
PATTERN = re.compile(r"redshift\s*:\s*([+-]?(?:\d+(?:\.\d+)?|\.\d+))(?!\.?\d|[eE][+-]?\d)", re.IGNORECASE)


def parse_redshift(text: str | None) -> float | None:
    """The redshift in ``text`` as a float, or None when the text does not hold one."""
    if not text:
        return None
    match = PATTERN.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    return value if math.isfinite(value) else None


TARGET = re.compile(r"^Redshift: (\d+)(?:\.(\d+))?$")


def target_grammar(targets) -> tuple[int, int]:
    """(int_digits, decimals) of the training targets ``"Redshift: 0.123"``: the most integer digits
    any target has, and their common number of decimals. Constrained decoding writes the same format."""
    int_digits, decimals = 1, set()
    for i, t in enumerate(targets):
        m = TARGET.match(str(t))
        if m is None:
            raise ValueError(f"target {i} is {t!r}, not 'Redshift: <digits>[.<digits>]'")
        int_digits = max(int_digits, len(m.group(1)))
        decimals.add(len(m.group(2) or ""))
    if len(decimals) != 1:
        raise ValueError(f"the targets mix {sorted(decimals)} decimals; serialize writes one fixed number")
    return int_digits, decimals.pop()
