"""Answer balancing: thin the candidate questions so that no answer dominates its template, and
always giving a template's most common answer scores poorly.

Answers fall into buckets per template (kind): the answer itself for choices and counts, and for
numbers a bin as wide as twice the tolerance (log-spaced for relative tolerances), so one guess
covers about one bin. Each bucket is capped at the largest size that keeps it within
max_share(n) of the kept items, n being the number of buckets: 0.5 for two, 1.5 / n but at
least 0.2 for more. A template whose answers all fall in one bucket is dropped: its answer is
known without looking (in seed 7's scenes, for example, every visible building is a house, so
"what type of building is this" is never asked). Which items a capped bucket keeps is decided by a hash of the item's id, so
the choice does not depend on the order items arrive in."""

from __future__ import annotations

import hashlib
import math


def bucket(item: dict) -> str:
    """The balance bucket of an item's answer (item: the QA dict fields answer_type, answer, value, abs_tol, rel_tol)."""
    t = item["answer_type"]
    if t in ("choice", "count"):
        return item["answer"]
    if t == "number":
        v, a, r = float(item["value"]), float(item["abs_tol"]), float(item["rel_tol"])
        if r > 0 and abs(v) > a / r:
            return f"log{math.floor(math.log(abs(v)) / math.log1p(2 * r))}"
        return f"lin{math.floor(v / (2 * a))}" if a > 0 else str(v)
    return "text"


def max_share(buckets: int) -> float:
    return 0.5 if buckets <= 2 else max(0.2, 1.5 / buckets)


def cap_for(sizes: list[int]) -> int:
    """The largest cap c such that a bucket of min(size, c) holds at most max_share(n) of all kept."""
    share = max_share(len(sizes))
    if len(sizes) == 1:
        return sizes[0]
    best = 1
    for c in range(1, max(sizes) + 1):
        kept = sum(min(s, c) for s in sizes)
        if c <= share * kept or c <= min(sizes):
            best = c
        else:
            break
    return best


def rank(item_id: str) -> str:
    return hashlib.sha256(item_id.encode()).hexdigest()


def balance(items: list[dict]) -> list[dict]:
    """The items kept (in their given order). items: dicts with id, kind, answer_type, answer,
    value, abs_tol, rel_tol. Captions (answer_type text) are all kept; kinds with one answer bucket dropped."""
    by_kind: dict[str, dict[str, list[int]]] = {}
    for i, it in enumerate(items):
        if it["answer_type"] == "text":
            continue
        by_kind.setdefault(it["kind"], {}).setdefault(bucket(it), []).append(i)
    drop: set[int] = set()
    for kind, buckets in by_kind.items():
        if len(buckets) == 1:
            drop.update(*buckets.values())
            continue
        cap = cap_for([len(v) for v in buckets.values()])
        for members in buckets.values():
            if len(members) > cap:
                members = sorted(members, key=lambda i: rank(items[i]["id"]))
                drop.update(members[cap:])
    return [it for i, it in enumerate(items) if i not in drop]
