"""Concept detector for the pocket world: a small CNN trained on rendered ground truth.

Public API::

    from trce_audit.pocket.detector import load_detector, detect, CONCEPT_NAMES
    det = load_detector()                 # cached, eval mode, CPU
    probs = detect(images)                # [B, len(CONCEPT_NAMES)] presence probabilities
    feats = detector_features(images)     # [B, 128] penultimate features (for FID)

``images``: float tensor [B,3,H,W] in [0,1] (any H,W; resized to 32x32) or a list of PIL images.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from ..errors import ConfigError
from . import world

# v1: clean renders only (calls colour noise a cross); v2: v1 fine-tuned with negatives (judge_training.py).
# Old versions stay loadable by name so that results stored under them can be re-scored.
DETECTOR_VERSION = "pocket-detector-v2"
CONCEPT_NAMES: tuple[str, ...] = world.KINDS
COLOUR_NAMES: tuple[str, ...] = world.COLOUR_NAMES
BACKGROUND_NAMES: tuple[str, ...] = world.BACKGROUNDS
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DETECTOR_PATHS = {"pocket-detector-v1": WEIGHTS_DIR / "detector.safetensors",
                  "pocket-detector-v2": WEIGHTS_DIR / "detector-v2.safetensors"}
DETECTOR_PATH = DETECTOR_PATHS[DETECTOR_VERSION]
FEATURE_DIM = 128


class PocketDetector(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = width

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(3, w), block(w, w), nn.MaxPool2d(2),  # 16
            block(w, 2 * w), block(2 * w, 2 * w), nn.MaxPool2d(2),  # 8
            block(2 * w, 4 * w), block(4 * w, 4 * w), nn.MaxPool2d(2),  # 4
        )
        self.fc = nn.Linear(4 * w * 16, FEATURE_DIM)
        self.head_kind = nn.Linear(FEATURE_DIM, len(CONCEPT_NAMES))
        self.head_colour = nn.Linear(FEATURE_DIM, len(COLOUR_NAMES))
        self.head_bg = nn.Linear(FEATURE_DIM, len(BACKGROUND_NAMES))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - 0.5) / 0.25
        h = self.body(x).flatten(1)
        return F.relu(self.fc(h))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.features(x)
        return {"features": f, "kinds": self.head_kind(f), "colours": self.head_colour(f),
                "background": self.head_bg(f)}


# --------------------------------------------------------------------------- input handling
def to_tensor(images) -> torch.Tensor:
    """PIL list / numpy / tensor -> float [B,3,32,32] in [0,1]."""
    if isinstance(images, torch.Tensor):
        x = images
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        x = x.float()
    else:
        arrs = []
        for im in images:
            if hasattr(im, "convert"):
                im = np.asarray(im.convert("RGB"))
            a = np.asarray(im)
            if a.dtype == np.uint8:
                a = a.astype(np.float32) / 255.0
            arrs.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1))
        if not arrs:
            return torch.zeros(0, 3, world.IMAGE_SIZE, world.IMAGE_SIZE)
        sizes = {tuple(a.shape[1:]) for a in arrs}
        if len(sizes) > 1:
            arrs = [_resize(a.unsqueeze(0))[0] for a in arrs]
        x = torch.stack(arrs)
    return _resize(x.clamp(0, 1))


def _resize(x: torch.Tensor) -> torch.Tensor:
    S = world.IMAGE_SIZE
    if x.shape[-2:] == (S, S):
        return x
    if x.shape[-1] > S:
        return F.interpolate(x, size=(S, S), mode="area")
    return F.interpolate(x, size=(S, S), mode="bilinear", align_corners=False)


# --------------------------------------------------------------------------- loading
def detector_path(version: str | None = None) -> Path:
    """Weights file of a detector version (default: the current one)."""
    version = version or DETECTOR_VERSION
    if version not in DETECTOR_PATHS:
        raise ConfigError(f"unknown pocket detector version {version!r}; known: {', '.join(DETECTOR_PATHS)}")
    return DETECTOR_PATHS[version]


@functools.lru_cache(maxsize=8)
def _sha256(path: str, mtime: float) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weights_sha256(path: str | Path | None = None, version: str | None = None) -> str:
    p = Path(path or detector_path(version))
    return _sha256(str(p), p.stat().st_mtime)


@functools.lru_cache(maxsize=4)
def _load(path: str) -> PocketDetector:
    net = PocketDetector()
    net.load_state_dict(load_file(path))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def load_detector(path: str | Path | None = None, device: str | torch.device = "cpu",
                  version: str | None = None) -> PocketDetector:
    """Load a shipped detector (cached; ``version`` picks one, default the current).  Returns an
    eval-mode module on ``device``."""
    net = _load(str(path or detector_path(version)))
    return net.to(device)


def detector_info(path: str | Path | None = None, version: str | None = None) -> dict:
    p = Path(path or detector_path(version))
    return {"version": version or DETECTOR_VERSION, "concepts": list(CONCEPT_NAMES), "sha256": weights_sha256(p),
            "path": str(p)}


@torch.no_grad()
def _run(images, detector=None, batch_size: int = 256) -> dict[str, torch.Tensor]:
    det = detector or load_detector()
    dev = next(det.parameters()).device
    x = to_tensor(images)
    outs: dict[str, list] = {}
    for i in range(0, x.shape[0], batch_size):
        o = det(x[i : i + batch_size].to(dev))
        for k, v in o.items():
            outs.setdefault(k, []).append(v.float().cpu())
    if not outs:
        return {"features": torch.zeros(0, FEATURE_DIM), "kinds": torch.zeros(0, len(CONCEPT_NAMES)),
                "colours": torch.zeros(0, len(COLOUR_NAMES)), "background": torch.zeros(0, len(BACKGROUND_NAMES))}
    return {k: torch.cat(v) for k, v in outs.items()}


def detect(images, detector=None, batch_size: int = 256) -> torch.Tensor:
    """Per-concept presence probabilities [B, len(CONCEPT_NAMES)] (sigmoid; > 0.5 = present)."""
    return torch.sigmoid(_run(images, detector, batch_size)["kinds"])


def detect_all(images, detector=None, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """All heads: ``kinds`` [B,6] and ``colours`` [B,7] sigmoid probabilities, ``background``
    [B,6] softmax probabilities, ``features`` [B,128]."""
    o = _run(images, detector, batch_size)
    return {"kinds": torch.sigmoid(o["kinds"]), "colours": torch.sigmoid(o["colours"]),
            "background": torch.softmax(o["background"], -1), "features": o["features"]}


def detector_features(images, detector=None, batch_size: int = 256) -> torch.Tensor:
    """Penultimate-layer features [B,128] (for Frechet distance)."""
    return _run(images, detector, batch_size)["features"]


# --------------------------------------------------------------------------- training
def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Degradations that generated images show: blur, noise, colour/brightness jitter, shifts."""
    B = x.shape[0]
    dev = x.device
    # random blur (mix with a 3x3 box/gaussian blur)
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32, device=dev) / 16
    blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.view(1, 1, 3, 3).repeat(3, 1, 1, 1), groups=3)
    a = torch.rand(B, 1, 1, 1, generator=g, device=dev) * 1.2
    x = torch.where(a > 1.0, F.conv2d(F.pad(blurred, (1, 1, 1, 1), mode="replicate"),
                                      k.view(1, 1, 3, 3).repeat(3, 1, 1, 1), groups=3), x * (1 - a.clamp(max=1)) + blurred * a.clamp(max=1))
    # down-up sampling (VAE-like smoothing) for a quarter of the batch
    du = F.interpolate(F.interpolate(x, scale_factor=0.5, mode="area"), scale_factor=2, mode="bilinear", align_corners=False)
    sel = (torch.rand(B, 1, 1, 1, generator=g, device=dev) < 0.25).float()
    x = x * (1 - sel) + du * sel
    # brightness / contrast / colour jitter
    x = x * (1 + 0.15 * (torch.rand(B, 3, 1, 1, generator=g, device=dev) - 0.5))
    x = x + 0.1 * (torch.rand(B, 1, 1, 1, generator=g, device=dev) - 0.5)
    # noise
    sig = torch.rand(B, 1, 1, 1, generator=g, device=dev) * 0.06
    x = x + sig * torch.randn(x.shape, generator=g, device=dev)
    # integer shifts up to 1 px
    sx, sy = [int(v) for v in torch.randint(-1, 2, (2,), generator=g)]
    x = torch.roll(x, shifts=(sy, sx), dims=(2, 3))
    return x.clamp(0, 1)


def evaluate_accuracy(detector=None, n: int = 2000, seed: int = 12345, device="cpu") -> dict:
    """Per-concept accuracy of presence prediction on a fresh render set."""
    scenes = world.sample_scenes(n, seed)
    x = world.render(scenes, device)
    y = world.labels(scenes)
    o = _run(x, detector or load_detector())
    pred = (torch.sigmoid(o["kinds"]) > 0.5).float()
    acc = (pred == y["kinds"]).float().mean(0)
    cpred = (torch.sigmoid(o["colours"]) > 0.5).float()
    cacc = (cpred == y["colours"]).float().mean(0)
    bacc = (o["background"].argmax(-1) == y["background"]).float().mean()
    return {"n": n, "seed": seed, "kind_accuracy": {k: float(a) for k, a in zip(CONCEPT_NAMES, acc)},
            "min_kind_accuracy": float(acc.min()),
            "colour_accuracy": {k: float(a) for k, a in zip(COLOUR_NAMES, cacc)},
            "background_accuracy": float(bacc)}


def train_detector(out: str | Path = DETECTOR_PATHS["pocket-detector-v1"], steps: int = 3000, batch: int = 128, seed: int = 0,
                   device: str = "cpu", lr: float = 2e-3, log_every: int = 100) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    g = torch.Generator(device=device).manual_seed(seed)
    net = PocketDetector().to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    t0 = time.time()
    for step in range(steps):
        scenes = [world.sample_scene(rng, p_second=0.5) for _ in range(batch)]
        x = augment(world.render(scenes, device), g)
        y = {k: v.to(device) for k, v in world.labels(scenes).items()}
        o = net(x)
        loss = (F.binary_cross_entropy_with_logits(o["kinds"], y["kinds"])
                + 0.5 * F.binary_cross_entropy_with_logits(o["colours"], y["colours"])
                + 0.3 * F.cross_entropy(o["background"], y["background"]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            print(f"detector step {step} loss {loss.item():.4f} t={time.time() - t0:.0f}s", flush=True)
    net.eval().cpu()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(out))
    _load.cache_clear()
    res = evaluate_accuracy(_load(str(out)))
    res.update(train_steps=steps, batch=batch, train_seed=seed, device=device, seconds=round(time.time() - t0, 1))
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description="train (v1) / evaluate the pocket concept detector")
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--version", default=DETECTOR_VERSION, choices=list(DETECTOR_PATHS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    out = a.out or detector_path(a.version)
    if a.train:
        res = train_detector(out, a.steps, a.batch, a.seed, a.device)
    else:
        res = evaluate_accuracy(load_detector(out))
    res["info"] = detector_info(out, version=a.version)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
