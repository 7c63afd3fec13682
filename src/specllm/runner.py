"""The entry point every stage script runs through: a clear message and exit status 2 for bad input,
a cost record under DVC, and a hint on getting a failed stage's outputs back.

Kept apart from errors.py so that errors (imported by io, cost and everything else) imports nothing of
specllm: run_main needs cost, and cost needs io.
"""

from __future__ import annotations

from specllm.errors import InputError


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
