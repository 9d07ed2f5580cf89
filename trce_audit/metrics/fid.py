"""FID under the clean-fid protocol: PIL bicubic resize to 299x299 in float (clean-fid's own resizer),
Inception-v3 pool features (clean-fid's torchscript weights, from a local file: nothing is downloaded),
Fréchet distance between feature Gaussians.

``cleanfid.fid`` imports torchvision; where it imports, its ``frechet_distance`` is used, otherwise the
same formula here (scipy's sqrtm). The reference is a folder of images (featurised the same way) or a
.npz holding ``mu`` and ``sigma``. A custom feature extractor (a callable from a (B, 3, 299, 299) float
tensor in [0, 255] to (B, D) features) can replace Inception; the protocol then names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, PluginError
from ..hashing import hash_tree, sha256_file
from .base import MetricRunner
from .detections import check_readable
from .values import MetricValue
from ..workspace import user_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
INCEPTION_FILE = "inception-2015-12-05.pt"


@dataclass
class FIDConfig:
    reference: str | None = None  # folder of images or .npz with mu/sigma
    inception_weights: str | None = None  # clean-fid's torchscript Inception file (or a folder holding it)
    batch_size: int = 32
    device: str = "cpu"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), the formula clean-fid uses."""
    from scipy import linalg  # deferred: scipy.linalg costs a few hundred ms, and only a distance needs it

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ConfigError(f"FID statistics differ in dimension: {mu1.shape} vs {mu2.shape}")
    # No ``disp=False`` (deprecated in scipy 1.16, gone in 1.18): it only added an error estimate, which
    # nothing read; the square root is the same array either way.
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as clean-fid does
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        # clean-fid's (and pytorch-fid's) own bound on the rounding sqrtm leaves in the imaginary part
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ConfigError(f"FID: matrix square root has an imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def frechet_implementation() -> tuple[str, Callable[..., float]]:
    try:  # deferred: an optional extra, and cleanfid.fid imports torch and torchvision
        from cleanfid.fid import frechet_distance as cleanfid_frechet
    except Exception:  # cleanfid.fid needs torchvision
        return "trce_audit.metrics.fid.frechet_distance (clean-fid formula, scipy sqrtm)", frechet_distance
    return "cleanfid.fid.frechet_distance", lambda *args: float(cleanfid_frechet(*args))


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features, dtype=np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


class TorchscriptInception:
    """clean-fid's Inception (torchscript); input already resized to 299x299, values in [0, 255]."""

    def __init__(self, path: Path, device: str):
        import torch  # deferred: heavy, and needed only once Inception runs (not to load or check the runner)

        self.device = torch.device(device)
        self.model = torch.jit.load(str(path), map_location=self.device).eval()

    def __call__(self, batch):
        import torch  # deferred, as in __init__

        with torch.no_grad():
            x = (batch.to(self.device) - 128) / 128
            return self.model.layers.forward(x).view(batch.shape[0], -1)


class CleanFID(MetricRunner):
    name: ClassVar[str] = "fid"
    version: ClassVar[str] = "1"
    Config = FIDConfig
    produces: ClassVar[tuple[str, ...]] = ("fid",)

    def __init__(self, config: FIDConfig | None = None, *, extractor: Callable | None = None, extractor_name: str = "custom", **kwargs):
        super().__init__(config, **kwargs)
        self._extractor = extractor
        self._extractor_name = extractor_name if extractor is not None else None

    # ------------------------------------------------------------------ pieces
    def inception_path(self) -> Path:
        if not self.config.inception_weights:
            raise ConfigError(
                f"fid needs clean-fid's Inception weights as a local file ({INCEPTION_FILE}); pass --inception-weights"
            )
        path = user_path(self.config.inception_weights)
        if path.is_dir():
            path = path / INCEPTION_FILE
        if not path.is_file():
            raise ConfigError(f"Inception weights {path} do not exist")
        return path

    def extractor(self) -> Callable:
        if self._extractor is None:
            path = self.inception_path()
            self._extractor = TorchscriptInception(path, self.config.device)
            self._extractor_name = f"inception-v3-torchscript sha256:{sha256_file(path)}"
        return self._extractor

    def extractor_name(self) -> str:
        self.extractor()
        return self._extractor_name or "custom"

    def reference_path(self) -> Path:
        if not self.config.reference:
            raise ConfigError("fid needs a reference: a folder of images or a .npz with mu and sigma (--fid-ref)")
        path = user_path(self.config.reference)
        if not path.exists():
            raise ConfigError(f"FID reference {path} does not exist")
        if path.is_file() and path.suffix != ".npz":
            raise ConfigError(f"FID reference {path} is neither a folder of images nor a .npz file")
        return path

    def features(self, paths: Sequence[Path | str]) -> np.ndarray:
        """Clean-fid features: clean resize (PIL bicubic, float) then the extractor, in batches."""
        import torch  # deferred: torch and the optional clean-fid extra load only when images are featurised
        from cleanfid.resize import build_resizer

        resize = build_resizer("clean")
        extract = self.extractor()
        chunks = []
        for start in range(0, len(paths), self.config.batch_size):
            arrays = [resize(np.asarray(Image.open(p).convert("RGB"))) for p in paths[start : start + self.config.batch_size]]
            batch = torch.from_numpy(np.stack(arrays).astype(np.float32)).permute(0, 3, 1, 2)
            out = extract(batch)
            chunks.append(out.detach().cpu().double().numpy() if hasattr(out, "detach") else np.asarray(out, np.float64))
        return np.concatenate(chunks)

    def reference_stats(self) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        path = self.reference_path()
        if path.is_file():
            with np.load(path) as stats:
                if "mu" not in stats or "sigma" not in stats:
                    raise ConfigError(f"FID reference {path} has no mu and sigma arrays")
                return stats["mu"], stats["sigma"], {"reference": str(path), "reference_sha256": sha256_file(path)}
        files = image_files(path)
        if len(files) < 2:
            raise ConfigError(f"FID reference folder {path} holds fewer than 2 images")
        mu, sigma = gaussian_stats(self.features(files))
        info = {"reference": str(path), "reference_sha256": hash_tree(path, IMAGE_SUFFIXES), "reference_n": len(files)}
        return mu, sigma, info

    def protocol(self) -> dict[str, Any]:
        return {
            "metric": "fid",
            "protocol": "clean-fid (mode=clean: PIL bicubic float resize to 299x299)",
            "feature_extractor": self.extractor_name(),
            "runner_version": self.version,
        }

    def score(self, store, run_id: int, images: Sequence) -> list[MetricValue]:
        if len(images) < 2:
            raise ConfigError(f"FID needs at least 2 generated images, got {len(images)}")
        try:  # the optional extra, checked before any image is read
            import cleanfid.resize  # noqa: F401
        except ImportError as exc:
            raise PluginError("the fid metric needs clean-fid: pip install 'trce-audit[fid]'") from exc
        for image in images:  # an unreadable image fails naming it, before any featurising
            check_readable(image.image_path)
        ref_mu, ref_sigma, ref_info = self.reference_stats()
        mu, sigma = gaussian_stats(self.features([image.image_path for image in images]))
        implementation, distance = frechet_implementation()
        value = distance(mu, sigma, ref_mu, ref_sigma)
        protocol = {**self.protocol(), **ref_info, "frechet": implementation, "feature_dim": int(mu.shape[0])}
        return [MetricValue("fid", value, len(images), None, None, protocol)]
