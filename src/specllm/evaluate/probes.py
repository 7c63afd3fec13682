"""Multiple-choice probe sets: the JSONL schema, its validation, and a converter for ARC/SciQ/MMLU.

Schema, one JSON object per line::

    {"id": "sci-001", "question": "...", "choices": ["...", "...", "...", "..."], "answer": 2, "topic": "physics"}

``choices`` holds exactly four distinct non-empty strings, ``answer`` is the index (0-3) of the
correct one, ``id`` is unique within the file, ``topic`` is free text. A probe folder holds one
or more such ``*.jsonl`` files; each file is one probe set named by its stem (``science``,
``general``, ``arc_challenge``, ...).

Converter (``python -m specllm.evaluate.probes SRC.jsonl DST.jsonl [--format auto|arc|sciq|mmlu]``)
reads the field names of the Hugging Face copies of the standard benchmarks:

- ARC (``allenai/ai2_arc``): ``id``, ``question``, ``choices: {"text": [...], "label": [...]}``,
  ``answerKey`` (a label such as ``"C"`` or ``"3"``); AI2's original release, ``question: {"stem",
  "choices": [{"text", "label"}]}``, is read too. topic: ``"arc"``.
- SciQ (``allenai/sciq``): ``question``, ``distractor1..3``, ``correct_answer`` (``support`` is not
  used: the probe asks the question without the passage). The correct answer is put at position
  ``line_number % 4`` (balanced and deterministic); id ``sciq-<line>``, topic ``"sciq"``.
- MMLU (``cais/mmlu``): ``question``, ``choices`` (4), ``answer`` (0-3, or a letter A-D), ``subject``
  (-> topic); id ``mmlu-<subject>-<line>``.

Items that cannot become a valid four-choice item (ARC questions with 3 or 5 options, duplicate or
empty options) are skipped and counted; the converter prints the count and writes nothing silently.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from specllm.errors import InputError

N_CHOICES = 4
FIELDS = ("id", "question", "choices", "answer", "topic")
FIX = "each line needs id, question, choices (4 distinct strings), answer (0-3) and topic; see specllm.evaluate.probes"


def validate_item(item: Any, file: str | Path, line: int) -> dict[str, Any]:
    """The item when it matches the schema, else InputError naming the file, line and field."""
    where = f"line {line}"
    if not isinstance(item, Mapping):
        raise InputError(file, where, "not a JSON object", FIX)
    missing = [f for f in FIELDS if f not in item]
    if missing:
        raise InputError(file, f"{where}: {', '.join(missing)}", "missing field", FIX)
    if not isinstance(item["id"], str) or not item["id"]:
        raise InputError(file, f"{where}: id", "must be a non-empty string", FIX)
    if not isinstance(item["question"], str) or not item["question"].strip():
        raise InputError(file, f"{where}: question", "must be non-empty text", FIX)
    choices = item["choices"]
    if not isinstance(choices, list) or len(choices) != N_CHOICES:
        got = len(choices) if isinstance(choices, list) else type(choices).__name__
        raise InputError(file, f"{where}: choices", f"must be a list of {N_CHOICES} strings, got {got}", FIX)
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise InputError(file, f"{where}: choices", "every choice must be non-empty text", FIX)
    if len({c.strip().lower() for c in choices}) != N_CHOICES:
        raise InputError(file, f"{where}: choices", "two choices are the same", "make the four choices distinct")
    answer = item["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < N_CHOICES:
        raise InputError(file, f"{where}: answer", f"must be an integer index 0-{N_CHOICES - 1}, got {answer!r}", FIX)
    if not isinstance(item["topic"], str) or not item["topic"]:
        raise InputError(file, f"{where}: topic", "must be a non-empty string", FIX)
    return {k: item[k] for k in FIELDS}


def load_probe_file(path: str | Path) -> list[dict[str, Any]]:
    """Validated items of one probe JSONL file (unique ids, at least one item)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "-", "probe file not found", "give a JSONL file or a folder of them (--probes / retention.probes)")
    items, seen = [], set()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(path, f"line {number}", f"not valid JSON ({err.msg})", FIX) from None
            item = validate_item(raw, path, number)
            if item["id"] in seen:
                raise InputError(path, f"line {number}: id", f"duplicate id {item['id']!r}", "give every item its own id")
            seen.add(item["id"])
            items.append(item)
    if not items:
        raise InputError(path, "-", "no probe items", "add items, or remove the empty file from the probe folder")
    return items


def load_probes(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """{set name: items}: one set for a file, one per *.jsonl (sorted) for a folder."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise InputError(path, "-", "no *.jsonl probe files in the folder", "point --probes / retention.probes at probe JSONL files")
        return {f.stem: load_probe_file(f) for f in files}
    return {path.stem: load_probe_file(path)}


def answer_balance(items: Iterable[Mapping[str, Any]]) -> dict[int, int]:
    counts = Counter(int(i["answer"]) for i in items)
    return {k: counts.get(k, 0) for k in range(N_CHOICES)}


# --- converter -------------------------------------------------------------------------------------


def detect_format(rec: Mapping[str, Any]) -> str:
    if "answerKey" in rec:
        return "arc"
    if "correct_answer" in rec and "distractor1" in rec:
        return "sciq"
    if "choices" in rec and "answer" in rec and "subject" in rec:
        return "mmlu"
    if set(FIELDS) <= set(rec):
        return "probe"
    raise ValueError(f"unknown field names {sorted(rec)}: expected ARC (answerKey), SciQ (correct_answer, "
                     "distractor1-3) or MMLU (question, choices, answer, subject)")


def convert_record(rec: Mapping[str, Any], fmt: str, line: int) -> dict[str, Any] | None:
    """One source record in the probe schema, or None when it cannot be a four-choice item."""
    if fmt == "auto":
        fmt = detect_format(rec)
    if fmt == "arc":
        q = rec["question"]
        if isinstance(q, Mapping):  # AI2's original release
            stem, opts = q["stem"], q["choices"]
            texts, labels = [o["text"] for o in opts], [str(o["label"]) for o in opts]
        else:
            stem, texts, labels = q, list(rec["choices"]["text"]), [str(x) for x in rec["choices"]["label"]]
        key = str(rec["answerKey"]).strip()
        if len(texts) != N_CHOICES or key not in labels:
            return None
        item = {"id": str(rec.get("id", f"arc-{line}")), "question": stem, "choices": texts,
                "answer": labels.index(key), "topic": "arc"}
    elif fmt == "sciq":
        wrong = [rec["distractor1"], rec["distractor2"], rec["distractor3"]]
        pos = (line - 1) % N_CHOICES
        choices = wrong[:pos] + [rec["correct_answer"]] + wrong[pos:]
        item = {"id": str(rec.get("id", f"sciq-{line}")), "question": rec["question"], "choices": choices,
                "answer": pos, "topic": "sciq"}
    elif fmt == "mmlu":
        answer = rec["answer"]
        if isinstance(answer, str):
            answer = "ABCD".index(answer.strip().upper()) if answer.strip().upper() in ("A", "B", "C", "D") else int(answer)
        subject = str(rec.get("subject") or "mmlu")
        item = {"id": str(rec.get("id", f"mmlu-{subject}-{line}")), "question": rec["question"],
                "choices": list(rec["choices"]), "answer": int(answer), "topic": subject}
    elif fmt == "probe":
        item = {k: rec[k] for k in FIELDS}
    else:
        raise ValueError(f"unknown format {fmt!r}")
    try:
        return validate_item(item, "-", line)
    except InputError:
        return None


def convert_file(src: str | Path, dst: str | Path, fmt: str = "auto") -> dict[str, int]:
    """Convert a benchmark JSONL file to the probe schema; returns {"written", "skipped"}."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise InputError(src, "-", "file not found", "give the benchmark's JSONL file")
    out, skipped, seen = [], 0, set()
    with open(src, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                item = convert_record(rec, fmt, number)
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
                raise InputError(src, f"line {number}", f"cannot convert ({type(err).__name__}: {err})",
                                 "pass --format arc|sciq|mmlu matching the file's field names") from None
            if item is None:
                skipped += 1
                continue
            while item["id"] in seen:
                item["id"] += f"-{number}"
            seen.add(item["id"])
            out.append(item)
    if not out:
        raise InputError(src, "-", f"no convertible items ({skipped} skipped)", "check --format and the file")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        for item in out:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    tmp.replace(dst)
    return {"written": len(out), "skipped": skipped}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Convert ARC/SciQ/MMLU JSONL to the probe schema")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--format", default="auto", choices=("auto", "arc", "sciq", "mmlu"))
    args = parser.parse_args(argv)
    counts = convert_file(args.src, args.dst, args.format)
    print(f"{args.src} -> {args.dst}: {counts['written']} items written, {counts['skipped']} skipped "
          f"(not exactly {N_CHOICES} distinct options, or no valid answer)")


if __name__ == "__main__":
    from specllm.runner import run_main

    run_main(main)
