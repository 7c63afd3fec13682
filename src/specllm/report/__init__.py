"""Turn stage outputs into what the paper reads: LaTeX macros, booktabs tables and figures.

Nothing in paper/ is typed by hand: every number, table and figure there is written by these
modules, called from the report stage (`python -m specllm.stages.report`).
"""
