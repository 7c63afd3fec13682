"""One error type for bad input: every message names the file, the field and the fix.

Stages raise InputError before they write anything, so earlier outputs stay intact;
the CLI and stage entry points turn it into a short message and exit code 2.
"""

from __future__ import annotations

from pathlib import Path


def clip(value: object, limit: int = 80) -> str:
    """repr() of a value echoed in a message, cut to `limit` characters (a bad field can be 200 MB)."""
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


class InputError(Exception):
    """Bad input that a user can fix: says where (file, field), what is wrong, and how to fix it."""

    def __init__(self, file: str | Path, field: str, problem: str, fix: str):
        self.file, self.field, self.problem, self.fix = str(file), field, problem, fix
        super().__init__(f"{self.file}: {field}: {problem}\n  fix: {fix}")
