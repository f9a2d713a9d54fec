"""The dataset's shared files, made from the scene folders: balanced QA as chat JSONL per split,
the dataset card (card.json and README.md), a picture of example frames with their QA, and
dataset.json, written last.

A JSONL line (the common single-turn chat format, as Hugging Face chat templates, TRL and
LLaMA-Factory read it)::

    {"id": "s0003_f05_q12",
     "messages": [{"role": "user", "content": [{"type": "image", "image": "scenes/scene_0003/f05_rgb.jpg"},
                                                {"type": "text", "text": "How many buildings ..."}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "7"}]}],
     "images": ["scenes/scene_0003/f05_rgb.jpg"],
     "meta": {"family": "counting", "kind": "counting.buildings", "answer_type": "count", "choices": [],
              "value": 7.0, "unit": "", "abs_tol": 0.0, "rel_tol": 0.0, "scene": 3, "frame": 5, "objects": [...]}}

Image paths are relative to the dataset folder."""

from __future__ import annotations

import json
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..exporters.atomic import fsync_paths, write_file_atomic
from .balance import balance
from .qa import FAMILIES

SPLITS = ("train", "val", "test")
SPLIT_SHARES = (0.8, 0.1, 0.1)
MANIFEST = "dataset.json"
EXAMPLES = "examples.jpg"


def split_of_scenes(n: int, seed: int) -> list[str]:
    """Split name per scene index: a seeded permutation, test and val getting 10 % each (at least
    one scene each from 3 scenes on; with 2 scenes one is test)."""
    order = np.random.default_rng([seed, 0x5917]).permutation(n).tolist()
    n_test = max(1, round(SPLIT_SHARES[2] * n)) if n >= 2 else 0
    n_val = max(1, round(SPLIT_SHARES[1] * n)) if n >= 3 else 0
    out = ["train"] * n
    for i in order[:n_test]:
        out[i] = "test"
    for i in order[n_test:n_test + n_val]:
        out[i] = "val"
    return out


def chat_record(item: dict) -> dict:
    """One QA item (a scene.json qa entry) as a chat JSONL record."""
    meta = {k: item[k] for k in ("family", "kind", "answer_type", "choices", "value", "unit", "abs_tol", "rel_tol",
                                 "scene", "frame", "objects", "points")}
    return {"id": item["id"],
            "messages": [{"role": "user", "content": [{"type": "image", "image": item["image"]},
                                                      {"type": "text", "text": item["question"]}]},
                         {"role": "assistant", "content": [{"type": "text", "text": item["answer"]}]}],
            "images": [item["image"]], "meta": meta}


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def load_scenes(out: Path, count: int) -> list[dict]:
    from .build import scene_dir

    return [json.loads((scene_dir(out, i) / "scene.json").read_text()) for i in range(count)]


def distributions(items: list[dict], top: int = 8) -> dict[str, dict]:
    """Per template kind: item count, answer buckets, and the top answers' shares."""
    from .balance import bucket

    out = {}
    for kind in sorted({it["kind"] for it in items}):
        rows = [it for it in items if it["kind"] == kind]
        answers = Counter("(caption)" if it["answer_type"] == "text" else it["answer"] for it in rows)
        buckets = Counter(bucket(it) for it in rows)
        out[kind] = {"count": len(rows), "answer_buckets": len(buckets),
                     "majority_share": round(max(buckets.values()) / len(rows), 4),
                     "top_answers": {a: round(c / len(rows), 4) for a, c in answers.most_common(top)}}
    return out


def card(settings: dict, scenes: list[dict], kept: list[dict], candidates: int, splits: list[str]) -> dict:
    fam = {f: sum(1 for it in kept if it["family"] == f) for f in FAMILIES}
    per_split = {s: {f: sum(1 for it in kept if it["family"] == f and splits[it["scene"]] == s) for f in FAMILIES}
                 for s in SPLITS}
    covers = Counter(s["site"]["cover"] for s in scenes)
    reliefs = Counter(s["site"]["relief"] for s in scenes)
    return {"format": settings["format"], "scenes": len(scenes), "frames": sum(len(s["frames"]) for s in scenes),
            "qa_pairs": len(kept), "candidates_before_balancing": candidates, "per_family": fam,
            "per_split": {s: {"scenes": splits.count(s), "qa_pairs": sum(per_split[s].values()), **per_split[s]}
                          for s in SPLITS},
            "scene_covers": dict(sorted(covers.items())), "scene_reliefs": dict(sorted(reliefs.items())),
            "answer_distributions": distributions(kept), "settings": settings}


def card_markdown(c: dict) -> str:
    s = c["settings"]
    lines = ["# worldstream UAV spatial-reasoning QA", "",
             f"{c['scenes']} scenes, {c['frames']} frames, {c['qa_pairs']} question-answer pairs "
             f"({c['candidates_before_balancing']} candidates before answer balancing), rendered from the "
             f"procedural world of seed {s['seed']} by `worldstream dataset build` (docs/dataset.md in the "
             f"worldstream repository describes the files, answer formats and tolerances).", "",
             "| family | " + " | ".join(SPLITS) + " | all |", "|---|" + "---|" * (len(SPLITS) + 1)]
    for f in FAMILIES:
        lines.append(f"| {f} | " + " | ".join(str(c["per_split"][sp][f]) for sp in SPLITS) + f" | {c['per_family'][f]} |")
    lines.append("| scenes | " + " | ".join(str(c["per_split"][sp]["scenes"]) for sp in SPLITS) + f" | {c['scenes']} |")
    lines += ["", "Scene sites by cover: " + ", ".join(f"{k} {v}" for k, v in c["scene_covers"].items())
              + "; by relief: " + ", ".join(f"{k} {v}" for k, v in c["scene_reliefs"].items()) + ".", "",
              "## Answer distributions", "", "| kind | items | buckets | largest bucket | top answers |",
              "|---|---|---|---|---|"]
    for kind, d in c["answer_distributions"].items():
        top = ", ".join(f"{a} {100 * v:.0f}%" for a, v in list(d["top_answers"].items())[:5])
        lines.append(f"| {kind} | {d['count']} | {d['answer_buckets']} | {100 * d['majority_share']:.0f}% | {top} |")
    r = s["ranges"]
    lines += ["", "## Generation settings", "",
              f"- camera {s['width']}x{s['height']} px, horizontal field of view {s['fov_deg']} deg, {s['views']} "
              f"views per scene along a random trajectory",
              f"- altitude {r['altitude'][0]}-{r['altitude'][1]} m above the surface, pitch {r['pitch'][0]} to "
              f"{r['pitch'][1]} deg, roll within +-{r['roll']} deg, within {r['radius']} m of the scene centre",
              f"- sites: " + ("given by the user" if s["centres"] else
                              f"{s['region_m']} m square around the origin, at least {s['spacing_m']} m apart"),
              f"- chunk selection: horizon {s['horizon_m']} m, max screen-space error {s['max_sse']} px",
              f"- world: `{json.dumps(s['spec'])}`", ""]
    return "\n".join(lines)


def _font(size: int):
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default()


def examples_picture(out: Path, scenes: list[dict], kept: list[dict], count: int = 4, per_frame: int = 4,
                     tile: int = 480) -> bytes:
    """A JPEG of `count` example frames (from different scenes, those with the most kinds of question
    first) with some of their QA below each, the boxes of the objects and the ground points they
    name drawn in."""
    by_frame: dict[tuple[int, int], list[dict]] = {}
    for it in kept:
        by_frame.setdefault((it["scene"], it["frame"]), []).append(it)
    picks, used = [], set()
    for (sc, fr), items in sorted(by_frame.items(), key=lambda kv: (-len({i["kind"] for i in kv[1]}), kv[0])):
        if sc not in used:
            picks.append((sc, fr, items))
            used.add(sc)
        if len(picks) == count:
            break
    font = _font(13)
    text_h = 20 + 16 * per_frame * 3
    cols = 2
    rows = (len(picks) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tile, max(1, rows) * (tile * 3 // 4 + text_h)), "white")
    for n, (sc, fr, items) in enumerate(picks):
        frame = scenes[sc]["frames"][fr]
        img = Image.open(out / items[0]["image"]).convert("RGB")
        w, h = img.size
        scale = tile / w
        img = img.resize((tile, round(h * scale)))
        draw = ImageDraw.Draw(img)
        chosen = []
        for fam in FAMILIES:
            chosen += [it for it in items if it["family"] == fam][:1]
        chosen = chosen[:per_frame]
        boxes = {o["id"]: o["box"] for o in frame["objects"]}
        colours = ["#ff3030", "#30c0ff", "#ffd000", "#40ff40"]
        for k, it in enumerate(chosen):
            for oid in it["objects"][:4]:
                if oid in boxes:
                    x0, y0, x1, y1 = (v * scale for v in boxes[oid])
                    draw.rectangle([x0, y0, x1, y1], outline=colours[k % 4], width=2)
            for u, v in it["points"]:
                u, v = u * scale, v * scale
                draw.line([u - 6, v, u + 6, v], fill=colours[k % 4], width=2)
                draw.line([u, v - 6, u, v + 6], fill=colours[k % 4], width=2)
        x, y = (n % cols) * tile, (n // cols) * (tile * 3 // 4 + text_h)
        sheet.paste(img, (x, y))
        d = ImageDraw.Draw(sheet)
        ty = y + img.size[1] + 4
        for k, it in enumerate(chosen):
            text = f"Q: {it['question']}  A: {it['answer']}"
            for line in textwrap.wrap(text, 72)[:3]:
                d.text((x + 6, ty), line, fill=colours[k % 4] if line.startswith("Q:") else "black", font=font)
                ty += 16
    import io

    buf = io.BytesIO()
    sheet.save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def assemble(out: Path, settings, count: int) -> dict:
    """Balance, split and write the shared files from the `count` scene folders; returns the card."""
    out = Path(out)
    scenes = load_scenes(out, count)
    candidates = [it for s in scenes for it in s["qa"]]
    kept = balance(candidates)
    splits = split_of_scenes(count, settings.seed)
    written = []
    for s in SPLITS:
        path = out / f"{s}.jsonl"
        write_file_atomic(path, jsonl_bytes([chat_record(it) for it in kept if splits[it["scene"]] == s]),
                          durable=False)
        written.append(path)
    c = card(settings.to_dict(), scenes, kept, len(candidates), splits)
    c["scene_splits"] = splits
    for name, data in (("card.json", (json.dumps(c, indent=1) + "\n").encode()),
                       ("README.md", card_markdown(c).encode()),
                       (EXAMPLES, examples_picture(out, scenes, kept))):
        write_file_atomic(out / name, data, durable=False)
        written.append(out / name)
    fsync_paths(written + [out])
    manifest = {"format": c["format"], "complete": True, "scenes": c["scenes"], "frames": c["frames"],
                "qa_pairs": c["qa_pairs"], "per_family": c["per_family"], "splits": {s: f"{s}.jsonl" for s in SPLITS}}
    write_file_atomic(out / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    fsync_paths([out])
    return c
