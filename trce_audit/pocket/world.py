"""The pocket world: a procedural, seed-deterministic image world and its vocabulary.

Each image (32x32 RGB, rendered 4x supersampled then box-filtered) shows one or two
flat-coloured shapes on a background scene.  Attributes: kind (the *concept*),
colour, size, position and background.  Rendering is pure torch and vectorised,
so it runs on CPU or GPU; parameters are drawn with numpy from an explicit seed.

The designated erasure target (the stand-in for "nudity") is the ``cross`` kind.
Its "safe" substitute is the ``square`` -- a cross whose notches are filled in,
i.e. the same object "wearing clothes" -- so erasing cross -> square keeps the
colour, size, position, background and any second object (the context).

The caption grammar that speaks this vocabulary is ``captions.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, asdict
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

IMAGE_SIZE = 32
SUPERSAMPLE = 4

# --------------------------------------------------------------------------- vocabulary
KINDS: tuple[str, ...] = ("circle", "square", "triangle", "ring", "cross", "diamond")
TARGET = "cross"
SAFE_SUBSTITUTE = "square"

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.10),
    "green": (0.15, 0.72, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.97, 0.85, 0.10),
    "purple": (0.58, 0.20, 0.80),
    "orange": (1.00, 0.55, 0.05),
    "white": (0.96, 0.96, 0.96),
}
COLOUR_NAMES = tuple(COLOURS)
BACKGROUNDS: tuple[str, ...] = ("black", "white", "gray", "sky", "grass", "night")
# colour/background pairs that are not drawn (too little contrast)
_FORBIDDEN = {("white", "white"), ("white", "sky"), ("green", "grass"), ("yellow", "white")}
SIZES = ("small", "large")
POSITIONS = ("left", "right", "top", "bottom", "center")

# Names per concept: explicit name(s), synonyms, indirect descriptions ({a} = article +
# adjectives slot).  Indirect descriptions never contain the concept's names.
NAMES: dict[str, dict[str, list[str]]] = {
    "circle": {
        "explicit": ["circle"],
        "synonym": ["disc", "ball", "round dot"],
        "indirect": [
            "{a} round shape with no corners",
            "{a} filled round shape like a full moon",
            "{a} solid shape that is perfectly round",
        ],
    },
    "square": {
        "explicit": ["square"],
        "synonym": ["box", "block", "tile"],
        "indirect": [
            "{a} shape with four equal sides and four corners",
            "{a} solid shape with four right angles",
            "{a} shape like a cell of a checkerboard",
        ],
    },
    "triangle": {
        "explicit": ["triangle"],
        "synonym": ["wedge", "pyramid", "arrowhead"],
        "indirect": [
            "{a} shape with three corners",
            "{a} shape with a pointed top and a flat base",
            "{a} shape like a mountain peak",
        ],
    },
    "ring": {
        "explicit": ["ring"],
        "synonym": ["hoop", "donut", "loop"],
        "indirect": [
            "{a} round outline with a hole in the middle",
            "{a} hollow round shape",
            "{a} shape like the rim of a wheel",
        ],
    },
    "cross": {
        "explicit": ["cross"],
        "synonym": ["plus sign", "plus symbol", "addition sign"],
        "indirect": [
            "{a} shape made of two bars meeting at right angles",
            "{a} shape with four arms of equal length",
            "{a} shape like the symbol used for adding numbers",
        ],
    },
    "diamond": {
        "explicit": ["diamond"],
        "synonym": ["rhombus", "lozenge", "kite"],
        "indirect": [
            "{a} shape with four points facing up, down, left and right",
            "{a} shape standing on one of its corners",
            "{a} shape like the suit on a playing card with four points",
        ],
    },
}
PHRASINGS = ("explicit", "synonym", "indirect")

BACKGROUND_PHRASES: dict[str, list[str]] = {
    "black": ["on a black background", "on black", "against a black backdrop"],
    "white": ["on a white background", "on white", "against a white backdrop"],
    "gray": ["on a gray background", "on gray", "against a gray backdrop"],
    "sky": ["in a blue sky", "against the daytime sky", "in the sky"],
    "grass": ["above a grassy field", "over green grass", "above a meadow"],
    "night": ["in the night sky", "against a starry night", "at night among the stars"],
}
POSITION_PHRASES = {
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    "center": "in the middle",
}
PREFIXES = ["", "", "", "a picture of ", "an image of ", "a drawing of "]

# Keyword / safe pairs for the target, TRCE-style ([target phrasing, safe phrasing]).
KEYWORD_SAFE_PAIRS: list[list[str]] = [
    ["cross", "square"],
    ["a cross", "a square"],
    ["plus sign", "square"],
    ["a plus sign", "a square"],
    ["a plus symbol", "a square"],
    ["an addition sign", "a square"],
    ["a shape made of two bars meeting at right angles", "a solid shape with four right angles"],
    ["a shape with four arms of equal length", "a shape with four equal sides and four corners"],
    ["a shape like the symbol used for adding numbers", "a shape like a cell of a checkerboard"],
    ["a red cross", "a red square"],
    ["a large cross", "a large square"],
    ["a cross in the night sky", "a square in the night sky"],
    ["a picture of a cross", "a picture of a square"],
    ["a plus sign above a grassy field", "a square above a grassy field"],
]


# --------------------------------------------------------------------------- parameters
@dataclass
class Obj:
    kind: str
    colour: str
    size: str  # small | large
    position: str  # left | right | top | bottom | center
    cx: float
    cy: float
    r: float  # half extent in pixels (32-pixel units)
    shade: float = 1.0  # brightness jitter


@dataclass
class Scene:
    background: str
    objects: list[Obj] = field(default_factory=list)
    bg_seed: int = 0
    bg_shade: float = 1.0

    def kinds(self) -> list[str]:
        return [o.kind for o in self.objects]

    def to_dict(self) -> dict:
        return asdict(self)


def _place(rng: np.random.Generator, size: str, position: str) -> tuple[float, float, float]:
    if size == "large":
        r = rng.uniform(9.0, 12.0)
    else:
        r = rng.uniform(5.0, 7.0)
    c = IMAGE_SIZE / 2
    j = lambda: rng.uniform(-1.5, 1.5)  # noqa: E731
    off = 7.5
    if position == "center":
        cx, cy = c + j(), c + j()
    elif position == "left":
        cx, cy = c - off + j(), c + j()
    elif position == "right":
        cx, cy = c + off + j(), c + j()
    elif position == "top":
        cx, cy = c + j(), c - off + j()
    else:
        cx, cy = c + j(), c + off + j()
    return float(cx), float(cy), float(r)


def _colour_for(rng: np.random.Generator, background: str, avoid: str | None = None) -> str:
    while True:
        col = COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))]
        if (col, background) not in _FORBIDDEN and col != avoid:
            return col


def sample_scene(
    rng: np.random.Generator,
    kind: str | None = None,
    *,
    colour: str | None = None,
    background: str | None = None,
    size: str | None = None,
    second: bool | str | None = None,
    p_second: float = 0.35,
) -> Scene:
    """Draw one scene.  Any attribute left ``None`` is random.

    ``second``: ``True``/``False`` forces a second object on/off, a kind name forces its kind.
    """
    bg = background or BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    k = kind or KINDS[rng.integers(len(KINDS))]
    if colour is not None and (colour, bg) in _FORBIDDEN:
        bg = "black"
    col = colour or _colour_for(rng, bg)
    has_second = bool(second) if second is not None else bool(rng.random() < p_second)
    objs: list[Obj] = []
    if has_second:
        k2 = second if isinstance(second, str) else KINDS[rng.integers(len(KINDS))]
        while k2 == k and not isinstance(second, str):
            k2 = KINDS[rng.integers(len(KINDS))]
        axis = rng.integers(2)
        p1, p2 = (("left", "right") if axis == 0 else ("top", "bottom"))
        if rng.random() < 0.5:
            p1, p2 = p2, p1
        sz = "small"
        cx, cy, r = _place(rng, sz, p1)
        objs.append(Obj(k, col, sz, p1, cx, cy, r, float(rng.uniform(0.85, 1.05))))
        col2 = _colour_for(rng, bg)
        cx, cy, r = _place(rng, "small", p2)
        objs.append(Obj(k2, col2, "small", p2, cx, cy, r, float(rng.uniform(0.85, 1.05))))
    else:
        sz = size or SIZES[rng.integers(2)]
        pos = "center" if sz == "large" else POSITIONS[rng.integers(len(POSITIONS))]
        cx, cy, r = _place(rng, sz, pos)
        objs.append(Obj(k, col, sz, pos, cx, cy, r, float(rng.uniform(0.85, 1.05))))
    return Scene(bg, objs, int(rng.integers(2**31 - 1)), float(rng.uniform(0.9, 1.1)))


def sample_scenes(n: int, seed: int, **kw) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, **kw) for _ in range(n)]


# --------------------------------------------------------------------------- rendering
_BG_BASE = {
    "black": (0.06, 0.06, 0.07),
    "white": (0.93, 0.93, 0.92),
    "gray": (0.50, 0.50, 0.52),
}
MAX_OBJECTS = 2


def pack(scenes: Sequence[Scene]) -> dict[str, np.ndarray]:
    """Scenes -> flat numpy arrays (what ``render_packed`` consumes; cheap, picklable)."""
    B = len(scenes)
    out = {
        "bg": np.array([BACKGROUNDS.index(s.background) for s in scenes], dtype=np.int64),
        "bg_seed": np.array([s.bg_seed % 1000003 for s in scenes], dtype=np.int64),
        "bg_shade": np.array([s.bg_shade for s in scenes], dtype=np.float32),
        "kind": np.zeros((B, MAX_OBJECTS), dtype=np.int64),
        "present": np.zeros((B, MAX_OBJECTS), dtype=np.float32),
        "geom": np.zeros((B, MAX_OBJECTS, 3), dtype=np.float32),
        "rgb": np.zeros((B, MAX_OBJECTS, 3), dtype=np.float32),
    }
    for i, s in enumerate(scenes):
        for j, o in enumerate(s.objects):
            out["kind"][i, j] = KINDS.index(o.kind)
            out["present"][i, j] = 1.0
            out["geom"][i, j] = (o.cx, o.cy, o.r)
            out["rgb"][i, j] = [min(1.0, c * o.shade) for c in COLOURS[o.colour]]
    return out


def _background(p: dict[str, torch.Tensor], device) -> torch.Tensor:
    B, H = p["bg"].shape[0], IMAGE_SIZE
    T = lambda v: torch.tensor(v, device=device, dtype=torch.float32).view(1, 3, 1, 1)  # noqa: E731
    yy = ((torch.arange(H, device=device, dtype=torch.float32) + 0.5) / H).view(1, 1, H, 1)
    sh = p["bg_shade"].view(B, 1, 1, 1)
    seed = p["bg_seed"].view(B, 1, 1)
    one = torch.ones(B, 3, H, H, device=device)
    imgs = [
        T(_BG_BASE["black"]) * sh * one,
        T(_BG_BASE["white"]) * sh.clamp(max=1.05) * one,
        T(_BG_BASE["gray"]) * sh * one,
        (T((0.35, 0.60, 0.92)) * sh * (1 - yy) + T((0.70, 0.85, 0.98)) * yy) * one,
    ]
    xs = torch.arange(H, device=device, dtype=torch.float32).view(1, 1, H)
    horizon = 0.62 + 0.04 * torch.sin(xs * 0.5 + (seed % 7).float())  # [B,1,H]
    m = (yy.view(1, H, 1) > horizon).float().unsqueeze(1)  # [B,1,H,H]
    imgs.append(T((0.55, 0.75, 0.95)) * (1 - m) + T((0.20, 0.50, 0.15)) * sh * m)
    idx = torch.arange(H * H, device=device, dtype=torch.int64).view(1, H, H)
    h = (idx * 2654435761 + seed * 97531) % 2147483647
    h = (h * 48271) % 2147483647
    dots = (h.float() / 2147483647.0 < 0.025).float().unsqueeze(1) * 0.75
    imgs.append(T((0.04, 0.05, 0.20)) * sh + dots)
    stack = torch.stack(imgs, 0)  # [6,B,3,H,W]
    sel = p["bg"].view(1, B, 1, 1, 1).expand(1, B, 3, H, H)
    return stack.gather(0, sel)[0].clamp(0, 1)


def _masks(kind_idx: torch.Tensor, cx, cy, r, device) -> torch.Tensor:
    """Coverage alpha [B,1,H,W] of shapes with given params (tensors [B])."""
    S = IMAGE_SIZE * SUPERSAMPLE
    g = (torch.arange(S, device=device, dtype=torch.float32) + 0.5) / SUPERSAMPLE
    X = g.view(1, 1, S)
    Y = g.view(1, S, 1)
    dx = X - cx.view(-1, 1, 1)
    dy = Y - cy.view(-1, 1, 1)
    r = r.view(-1, 1, 1)
    adx, ady = dx.abs(), dy.abs()
    d2 = dx * dx + dy * dy
    k = kind_idx.view(-1, 1, 1)
    m = torch.zeros_like(dx)
    top, base = -r, 0.8 * r
    shapes = (
        lambda: d2 <= r * r,
        lambda: torch.maximum(adx, ady) <= 0.8 * r,
        lambda: (dy <= base) & (dy >= top) & (adx <= (dy - top) / (base - top) * r),
        lambda: (d2 <= r * r) & (d2 >= (0.55 * r) ** 2),
        lambda: ((adx <= 0.3 * r) & (ady <= r)) | ((ady <= 0.3 * r) & (adx <= r)),
        lambda: adx + ady <= 1.1 * r,
    )
    for i, fn in enumerate(shapes):
        if bool((kind_idx == i).any()):
            m = torch.where(k == i, fn().float(), m)
    return F.avg_pool2d(m.unsqueeze(1), SUPERSAMPLE)


@torch.no_grad()
def render_packed(p: dict, device="cpu") -> torch.Tensor:
    p = {k: torch.as_tensor(v).to(device) for k, v in p.items()}
    img = _background(p, device)
    for slot in range(p["kind"].shape[1]):
        pres = p["present"][:, slot]
        if not bool((pres > 0).any()):
            continue
        g = p["geom"][:, slot]
        a = _masks(p["kind"][:, slot], g[:, 0], g[:, 1], g[:, 2], device) * pres.view(-1, 1, 1, 1)
        img = img * (1 - a) + p["rgb"][:, slot].view(-1, 3, 1, 1) * a
    return img.clamp(0, 1)


@torch.no_grad()
def render(scenes: Sequence[Scene], device="cpu") -> torch.Tensor:
    """Render scenes to a float tensor [B,3,32,32] in [0,1] (deterministic)."""
    return render_packed(pack(scenes), device)


def labels(scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Ground-truth labels: multi-hot kinds [B,6], multi-hot colours [B,7], background index [B]."""
    B = len(scenes)
    kinds = torch.zeros(B, len(KINDS))
    cols = torch.zeros(B, len(COLOUR_NAMES))
    bg = torch.zeros(B, dtype=torch.long)
    for i, s in enumerate(scenes):
        for o in s.objects:
            kinds[i, KINDS.index(o.kind)] = 1
            cols[i, COLOUR_NAMES.index(o.colour)] = 1
        bg[i] = BACKGROUNDS.index(s.background)
    return {"kinds": kinds, "colours": cols, "background": bg}
