"""`worldstream dataset eval`: score predictions against a split, per family and overall, with each
item's documented tolerance, and ROUGE-L for captions; and the majority-answer baseline.

Predictions: JSONL, one object per line with the item's "id" and either "answer" (a string) or
"messages" whose last assistant message holds the answer (so a split file scores itself).
Scoring per answer type:
- choice: the prediction, lower-cased and stripped of surrounding punctuation, equals an option
  or starts with one followed by a space (the longest such option wins); right if it is the answer;
- count: the first whole number in the prediction (or a number word up to twenty) equals the answer;
- number: the first number in the prediction lies within max(abs_tol, rel_tol * |value|) of the value;
- text (captions): ROUGE-L F-measure against the reference, reported apart from accuracy.
A missing prediction scores 0. Overall accuracy is over all non-caption items."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

from .qa import FAMILIES
from .rouge import rouge_l
from .scenes import DatasetError

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                    "fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}


def read_jsonl(path: Path | str) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{n}: not a JSON object ({exc})") from None
    return rows


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")


def answer_of(row: dict) -> str:
    """A prediction row's answer text: "answer", or its last assistant message."""
    if "answer" in row:
        return str(row["answer"])
    for m in reversed(row.get("messages", [])):
        if m.get("role") == "assistant":
            return _text(m.get("content", ""))
    raise DatasetError(f"prediction {row.get('id')!r}: expected an \"answer\" or an assistant message")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"^[\s\(\[\"'.:]+|[\s\)\]\"'.,;:!]+$", "", text.lower())).strip()


def _first_number(text: str) -> float | None:
    m = NUMBER.search(text.replace(",", ""))
    if m:
        return float(m.group())
    for w in re.findall(r"[a-z]+", text.lower()):
        if w in WORDS:
            return float(WORDS[w])
    return None


def score(item: dict, prediction: str | None) -> float:
    """Score in [0, 1] of one prediction for one JSONL item (its reference answer and meta)."""
    meta = item["meta"]
    reference = answer_of(item)
    if prediction is None:
        return 0.0
    t = meta["answer_type"]
    if t == "text":
        return rouge_l(prediction, reference)
    if t == "choice":
        p = _norm(prediction)
        options = [o for o in meta["choices"] if p == _norm(o) or p.startswith(_norm(o) + " ")
                   or p.startswith(_norm(o) + ")") or p.startswith(_norm(o) + ".")]
        return float(bool(options) and max(options, key=len) == reference)
    value = _first_number(prediction)
    if value is None:
        return 0.0
    if t == "count":
        return float(value == meta["value"])
    tol = max(meta["abs_tol"], meta["rel_tol"] * abs(meta["value"]))
    return float(abs(value - meta["value"]) <= tol + 1e-9)


def evaluate(items: list[dict], predictions: dict[str, str]) -> dict:
    """{"overall": accuracy over non-caption items, "families": {family: {"n", "accuracy" | "rouge_l"}},
    "kinds": {kind: {"n", "score"}}, "answered": share of items with a prediction}."""
    fam: dict[str, list[float]] = {f: [] for f in FAMILIES}
    kinds: dict[str, list[float]] = {}
    for it in items:
        s = score(it, predictions.get(it["id"]))
        fam[it["meta"]["family"]].append(s)
        kinds.setdefault(it["meta"]["kind"], []).append(s)
    acc = [s for f in FAMILIES if f != "caption" for s in fam[f]]
    families = {}
    for f, scores in fam.items():
        key = "rouge_l" if f == "caption" else "accuracy"
        families[f] = {"n": len(scores), key: round(sum(scores) / len(scores), 4) if scores else None}
    return {"items": len(items), "answered": round(sum(it["id"] in predictions for it in items) / max(1, len(items)), 4),
            "overall": round(sum(acc) / len(acc), 4) if acc else None, "families": families,
            "kinds": {k: {"n": len(v), "score": round(sum(v) / len(v), 4)} for k, v in sorted(kinds.items())}}


def split_items(data: Path | str, split: str) -> list[dict]:
    data = Path(data)
    path = data / f"{split}.jsonl"
    if not (data / "dataset.json").exists():
        raise DatasetError(f"{data}: no dataset.json: not a finished `worldstream dataset build` folder")
    if not path.exists():
        raise DatasetError(f"{data}: no {split}.jsonl; expected one of train, val, test")
    return read_jsonl(path)


def evaluate_files(data: Path | str, pred: Path | str, split: str = "test") -> dict:
    items = split_items(data, split)
    predictions = {}
    for row in read_jsonl(pred):
        if "id" not in row:
            raise DatasetError(f"{pred}: every line needs the item's \"id\"")
        predictions[row["id"]] = answer_of(row)
    return {"split": split, **evaluate(items, predictions)}


def majority_predictions(train: list[dict], items: list[dict]) -> dict[str, str]:
    """The majority-answer baseline: for each item the most common answer of its template kind in
    `train` (ties: the smallest answer), or in `items` where train has no such kind."""
    def majority(rows: list[dict]) -> dict[str, str]:
        by: dict[str, Counter] = {}
        for r in rows:
            by.setdefault(r["meta"]["kind"], Counter())[answer_of(r)] += 1
        return {k: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0] for k, c in by.items()}

    first, fallback = majority(train), majority(items)
    return {it["id"]: first.get(it["meta"]["kind"], fallback.get(it["meta"]["kind"], "")) for it in items}


def format_report(r: dict) -> str:
    lines = [f"split {r['split']}: {r['items']} items, {100 * r['answered']:.1f} % answered"]
    for f, d in r["families"].items():
        if f == "caption":
            v = "-" if d["rouge_l"] is None else f"ROUGE-L {d['rouge_l']:.4f}"
        else:
            v = "-" if d["accuracy"] is None else f"accuracy {100 * d['accuracy']:.2f} %"
        lines.append(f"  {f:<11} n={d['n']:<6} {v}")
    overall = "-" if r["overall"] is None else f"{100 * r['overall']:.2f} %"
    lines.append(f"  overall (non-caption) accuracy: {overall}")
    return "\n".join(lines)
