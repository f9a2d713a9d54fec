"""`dataset eval`: the ground truth scores 100 %, the majority baseline far less; ROUGE-L; balancing."""

from __future__ import annotations

import json

import pytest

from worldstream.cli import main
from worldstream.dataset.balance import balance
from worldstream.dataset.evaluate import evaluate, evaluate_files, majority_predictions, read_jsonl, score
from worldstream.dataset.rouge import lcs_length, rouge_l


def test_eval_scores_the_ground_truth_at_100_percent_and_the_majority_baseline_well_below(dataset, tmp_path, capsys):
    for split in ("train", "test"):
        report = evaluate_files(dataset, dataset / f"{split}.jsonl", split)
        assert report["overall"] == 1.0 and report["answered"] == 1.0
        assert all(d.get("accuracy", d.get("rouge_l")) == 1.0 for d in report["families"].values())
    pred = tmp_path / "majority.jsonl"
    assert main(["dataset", "baseline", "--data", str(dataset), "--out", str(pred), "--split", "test"]) == 0
    assert main(["dataset", "eval", "--data", str(dataset), "--pred", str(pred), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"] < 0.45, report
    # the same baseline fitted on the very items it answers (its best case) stays well below too
    items = read_jsonl(dataset / "train.jsonl") + read_jsonl(dataset / "test.jsonl")
    assert evaluate(items, majority_predictions(items, items))["overall"] < 0.5


def test_scoring_follows_the_answer_formats():
    def item(answer, **meta):
        base = {"family": "geometry", "kind": "k", "answer_type": "number", "choices": [], "value": None, "unit": "",
                "abs_tol": 0.0, "rel_tol": 0.0}
        return {"id": "x", "messages": [{}, {"role": "assistant", "content": [{"type": "text", "text": answer}]}],
                "meta": {**base, **meta}}

    num = item("40.0 m", value=40.0, unit="m", abs_tol=1.0, rel_tol=0.1)
    assert score(num, "about 43.9 metres") == 1.0 and score(num, "44.1 m") == 0.0 and score(num, "tall") == 0.0
    cnt = item("7", answer_type="count", value=7.0)
    assert score(cnt, "7") == 1.0 and score(cnt, "seven") == 1.0 and score(cnt, "8") == 0.0
    ch = item("upper left", answer_type="choice", choices=["left", "upper left", "above"])
    assert score(ch, "Upper left.") == 1.0 and score(ch, "left") == 0.0 and score(ch, None) == 0.0
    letter = item("B", answer_type="choice", choices=["A", "B"])
    assert score(letter, "(B)") == 1.0 and score(letter, "B. the tree") == 1.0 and score(letter, "A") == 0.0


def test_rouge_l_is_the_f_measure_of_the_longest_common_subsequence():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS "police the gunman" of 4 and 4 words (Lin 2004's example): P = R = 3/4
    assert rouge_l("police killed the gunman", "police kill the gunman") == pytest.approx(0.75)
    assert rouge_l("", "anything") == 0.0 and rouge_l("abc", "xyz") == 0.0


def test_balancing_keeps_no_answer_dominant():
    items = [{"id": f"i{i}", "kind": "k", "answer_type": "choice", "answer": "yes" if i < 90 else "no", "value": None,
              "abs_tol": 0.0, "rel_tol": 0.0} for i in range(100)]
    kept = balance(items)
    assert sum(it["answer"] == "yes" for it in kept) == sum(it["answer"] == "no" for it in kept) == 10
    assert balance(list(reversed(items))) == list(reversed(kept))  # chosen by id, not by order
    same = [dict(it, kind="one", answer="house") for it in items]
    assert balance(same + items) == kept  # a template with a single answer says nothing: dropped
