"""Land-cover classes, their segmentation palette, classification rules and albedo colours.

Class ids (uint8) are stable: they appear in semantic.png, GLB metadata and AirSim segmentation.
Colours are albedo (reflectance, no sun or shading baked in), in sRGB.
"""

from __future__ import annotations

import torch

from .noise import smoothstep

CLASSES: dict[int, str] = {
    0: "none",
    1: "water",
    2: "sand",
    3: "desert",
    4: "grass",
    5: "forest",
    6: "rock",
    7: "snow",
    8: "farmland",
    9: "road",
    10: "building",
    11: "urban_ground",
    12: "tree",
}
CLASS_IDS: dict[str, int] = {v: k for k, v in CLASSES.items()}

# segmentation palette: one distinct colour per class (not the albedo)
PALETTE: dict[int, tuple[int, int, int]] = {
    0: (0, 0, 0),
    1: (0, 90, 255),
    2: (250, 230, 140),
    3: (230, 170, 80),
    4: (120, 220, 80),
    5: (0, 120, 40),
    6: (140, 120, 110),
    7: (255, 255, 255),
    8: (200, 220, 20),
    9: (80, 80, 80),
    10: (230, 30, 30),
    11: (190, 160, 200),
    12: (20, 200, 150),
}

# albedo: base colour and per-channel variation amplitude, sRGB 0..255
ALBEDO: dict[int, tuple[tuple[float, float, float], float]] = {
    1: ((38.0, 72.0, 88.0), 10.0),
    2: ((205.0, 190.0, 150.0), 14.0),
    3: ((196.0, 160.0, 112.0), 22.0),
    4: ((104.0, 128.0, 62.0), 22.0),
    5: ((46.0, 74.0, 40.0), 18.0),
    6: ((128.0, 120.0, 110.0), 26.0),
    7: ((236.0, 240.0, 246.0), 8.0),
    8: ((150.0, 150.0, 80.0), 16.0),
    9: ((72.0, 72.0, 74.0), 8.0),
    10: ((150.0, 140.0, 132.0), 30.0),
    11: ((156.0, 152.0, 146.0), 14.0),
    12: ((62.0, 92.0, 46.0), 12.0),
}
CONIFER = (36.0, 62.0, 42.0)  # crown albedo of conifers (class 12 uses the broadleaf colour above)

CROPS = torch.tensor([[170.0, 165.0, 90.0], [120.0, 140.0, 60.0], [150.0, 120.0, 84.0],
                      [190.0, 170.0, 100.0], [96.0, 130.0, 54.0], [138.0, 110.0, 76.0]])
ROOFS = torch.tensor([[150.0, 80.0, 62.0], [120.0, 116.0, 112.0], [170.0, 166.0, 160.0],
                      [96.0, 92.0, 96.0], [140.0, 100.0, 80.0], [200.0, 198.0, 190.0]])


def classify(f: dict[str, torch.Tensor]) -> torch.Tensor:
    """Natural land cover per pixel (uint8), before roads and buildings are drawn over it.

    f: float32 tensors of one shape: water (0..1), slope (rise/run), temperature (deg C),
    moisture (0..1), coast (0..1), mountain (0..1), forest_noise, farm_noise (~N(0, 1)),
    snow_noise (~N(0, 1)), density (raw settlement density 0..1).
    """
    cls = torch.full(f["slope"].shape, CLASS_IDS["grass"], dtype=torch.uint8, device=f["slope"].device)
    farm = ((f["farm_noise"] + f["density"] * 3.0 > 0.35) & (f["slope"] < 0.12)
            & (f["moisture"] > 0.3) & (f["moisture"] < 0.8) & (f["temperature"] > 4.0))
    cls[farm] = CLASS_IDS["farmland"]
    forest = (f["moisture"] + f["forest_noise"] * 0.22 > 0.66) & (f["temperature"] > -1.0) & (f["slope"] < 0.9)
    cls[forest & ~farm] = CLASS_IDS["forest"]
    desert = (f["moisture"] < 0.3) & (f["temperature"] > 12.0)
    cls[desert] = CLASS_IDS["desert"]
    sand = f["coast"] > 0.5
    cls[sand] = CLASS_IDS["sand"]
    rock = (f["slope"] > 0.7 + f["forest_noise"] * 0.08) | ((f["mountain"] > 0.5) & (f["temperature"] < 4.0 + f["snow_noise"]))
    cls[rock] = CLASS_IDS["rock"]
    snow = (f["temperature"] < -1.0 + f["snow_noise"] * 1.5) & (f["slope"] < 1.1)
    cls[snow] = CLASS_IDS["snow"]
    cls[f["water"] > 0.5] = CLASS_IDS["water"]
    return cls


def _albedo_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """ALBEDO as lookup tables by class id (0..255): base colour (256, 3) and variation amplitude
    (256,), float32; 0 for classes without an albedo."""
    rgb = torch.zeros((256, 3), dtype=torch.float32)
    amp = torch.zeros((256,), dtype=torch.float32)
    for cid, (colour, a) in ALBEDO.items():
        rgb[cid] = torch.tensor(colour)
        amp[cid] = a
    return rgb, amp


_ALBEDO_RGB, _ALBEDO_AMP = _albedo_tables()


def albedo(cls: torch.Tensor, texture: torch.Tensor, broad: torch.Tensor, crop: torch.Tensor,
           roof: torch.Tensor, moisture: torch.Tensor,
           crown: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Albedo (H, W, 3) uint8 from classes and noise.

    texture, broad: float32 (H, W) ~N(0, 1) fine and broad variation; crop: int64 parcel hash;
    roof: int64 building hash; moisture: float32 (H, W); crown: (tree id int64, edge float32
    = (distance / crown radius)^2, kind int64: 0 conifer) per pixel, for the tree class: crowns
    darken towards their rim and each tree has its own tint, so single trees read from above.
    """
    dev = cls.device
    flat = cls.reshape(-1).to(torch.int64)
    base = _ALBEDO_RGB.to(dev).index_select(0, flat).reshape(cls.shape + (3,))
    amp = _ALBEDO_AMP.to(dev).index_select(0, flat).reshape(cls.shape)
    farm = cls == CLASS_IDS["farmland"]
    base[farm] = CROPS.to(dev)[torch.remainder(crop[farm], CROPS.shape[0])]
    bld = cls == CLASS_IDS["building"]
    base[bld] = ROOFS.to(dev)[torch.remainder(roof[bld], ROOFS.shape[0])]
    # drier grass is yellower
    grass = (cls == CLASS_IDS["grass"]).to(torch.float32) * smoothstep(0.55, 0.25, moisture)
    base = base + grass.unsqueeze(-1) * torch.tensor([36.0, 18.0, 8.0], device=dev)
    tint = torch.stack([texture * 0.9 + broad * 0.5, texture + broad * 0.4, texture * 0.8 + broad * 0.3], dim=-1)
    rgb = base + tint * (amp * 0.6).unsqueeze(-1)
    if crown is not None:
        tid, edge, kind = crown
        tree = cls == CLASS_IDS["tree"]
        conifer = tree & (kind == 0)
        rgb[conifer] = rgb[conifer] + (torch.tensor(CONIFER, device=dev) - torch.tensor(ALBEDO[12][0], device=dev))
        own = (torch.remainder(tid >> 3, 17).to(torch.float32) - 8.0) * 1.6  # per-tree tint
        shade = (1.0 - 0.35 * torch.clamp(edge, 0.0, 1.0)).unsqueeze(-1)
        lit = (rgb + torch.stack([own * 0.6, own, own * 0.3], dim=-1)) * shade
        rgb = torch.where(tree.unsqueeze(-1), lit, rgb)
    return torch.clamp(torch.round(rgb), 0, 255).to(torch.uint8)
