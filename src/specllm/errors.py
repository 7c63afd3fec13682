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


def run_main(main) -> None:
    """Run a stage's main(); turn InputError into a clear message and exit status 2.

    Under DVC the run's wall time, CPU time, peak memory and hardware are written to
    results/cost/<stage>.json (specllm.cost; nothing is written outside DVC).
    """
    import sys

    from specllm import cost

    try:
        with cost.record():
            main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        _restore_hint()
        raise SystemExit(2) from None
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            _restore_hint()
        raise
    except BaseException:
        _restore_hint()
        raise


def restore_hint() -> str | None:
    """Under `dvc repro` (DVC sets $DVC_STAGE), what a failed stage left and how to get its outputs back.

    DVC removes a stage's outputs before running it, so a failed run leaves none: saying "the previous
    output is unchanged" would be false. `dvc checkout <stage>` restores the last good ones (DVC cache)."""
    import os

    stage = os.environ.get("DVC_STAGE")
    if not stage:
        return None
    return (f"note: `dvc repro` removed the outputs of stage {stage} before running it; "
            f"`dvc checkout {stage}` restores the last good ones from the DVC cache")


def _restore_hint() -> None:
    import sys

    if hint := restore_hint():
        print(hint, file=sys.stderr)
