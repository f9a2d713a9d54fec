"""A loss curve as a PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw


def loss_plot_png(steps: list[int], losses: list[float], width: int = 800, height: int = 450,
                  title: str = "training loss") -> bytes:
    """PNG bytes: raw loss (light) and its exponential moving average (dark) against the step,
    loss on a log axis with decade labels."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right, top, bottom = 70, width - 20, 30, height - 40
    draw.text((left, 8), title, fill="black")
    if not steps:
        draw.text((left, height // 2), "no steps logged", fill="black")
    else:
        s = np.asarray(steps, dtype=np.float64)
        y = np.log10(np.maximum(np.asarray(losses, dtype=np.float64), 1e-12))
        ema = np.empty_like(y)
        acc = y[0]
        for k, v in enumerate(y):
            acc = 0.9 * acc + 0.1 * v if k else v
            ema[k] = acc
        y_lo, y_hi = math.floor(y.min()), math.ceil(y.max())
        if y_hi == y_lo:
            y_hi += 1
        s_lo, s_hi = s.min(), max(s.max(), s.min() + 1)

        def xy(si, yi):
            return (left + (si - s_lo) / (s_hi - s_lo) * (right - left),
                    bottom - (yi - y_lo) / (y_hi - y_lo) * (bottom - top))

        for d in range(y_lo, y_hi + 1):
            _, py = xy(s_lo, d)
            draw.line([(left, py), (right, py)], fill=(225, 225, 225))
            draw.text((5, py - 6), f"1e{d}", fill="black")
        draw.rectangle([left, top, right, bottom], outline="black")
        draw.text((left, bottom + 8), f"step {int(s_lo)}", fill="black")
        draw.text((right - 90, bottom + 8), f"step {int(s.max())}", fill="black")
        if len(s) > 1:
            draw.line([xy(a, b) for a, b in zip(s, y)], fill=(160, 190, 230), width=1)
            draw.line([xy(a, b) for a, b in zip(s, ema)], fill=(20, 60, 160), width=2)
        else:
            px, py = xy(s[0], y[0])
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=(20, 60, 160))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
