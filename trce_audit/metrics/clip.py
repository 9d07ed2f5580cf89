"""CLIP score: 100 * max(cos(image embedding, prompt embedding), 0) per image, averaged over images.

The model is a transformers CLIP by hub id or local folder (default openai/clip-vit-large-patch14).
Per-image scores are stored as detections (label ``clip_score``) keyed by a hash of the model's
weights, so a rerun scores only new images.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from PIL import Image

from ..errors import ConfigError
from ..models.resolve import quiet_hub_loggers
from .pixels import rgb
from .base import MetricRunner
from .detections import Detections
from .values import MetricValue

LABEL = "clip_score"


@dataclass
class CLIPConfig:
    model: str = "openai/clip-vit-large-patch14"
    batch_size: int = 16
    device: str = "cpu"


def weights_digest(model) -> str:
    """sha256 over the state dict (names, shapes, bytes): the same weights, whatever their source."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(flat.view(-1).float().numpy().tobytes() if flat.dtype.is_floating_point else flat.numpy().tobytes())
    return digest.hexdigest()


class CLIPScore(MetricRunner):
    name: ClassVar[str] = "clip"
    version: ClassVar[str] = "1"
    Config = CLIPConfig
    produces: ClassVar[tuple[str, ...]] = ("clip_score",)

    def __init__(self, config: CLIPConfig | None = None, *, model=None, processor=None, model_name: str | None = None, **kwargs):
        """``model``/``processor`` inject an already-built CLIP (tests); ``model_name`` then labels it."""
        super().__init__(config, **kwargs)
        self.detect_batch_size = self.config.batch_size
        self._model, self._processor = model, processor
        self._model_name = model_name if model is not None else None
        self._digest: str | None = None

    def _load(self):
        if self._model is None:
            from transformers import CLIPModel, CLIPProcessor  # deferred: heavy, and only a CLIP built here needs it

            quiet_hub_loggers()
            try:
                self._model = CLIPModel.from_pretrained(self.config.model)
                self._processor = CLIPProcessor.from_pretrained(self.config.model)
            except Exception as exc:
                raise ConfigError(f"cannot load CLIP model {self.config.model!r}: {type(exc).__name__}: {exc}") from exc
            self._model_name = self.config.model
        self._model.to(self.config.device).eval()
        return self._model, self._processor

    def detector_key(self) -> tuple[str, str, str]:
        if self._digest is None:
            self._digest = weights_digest(self._load()[0])
        return ("clip", self.version, self._digest)

    def protocol(self) -> dict[str, Any]:
        detector, version, weights = self.detector_key()
        return {
            "metric": "clip_score",
            "model": self._model_name or self.config.model,
            "detector": detector,
            "detector_version": version,
            "weights_sha256": weights,
            "formula": "100 * max(cos(image, text), 0), mean over images",
            "runner_version": self.version,
        }

    def detect(self, images: Sequence) -> list[Detections]:
        import torch  # deferred: heavy; loading or checking the runner needs none of it

        model, processor = self._load()
        texts = [image.prompt.text for image in images]
        pictures = [Image.fromarray(rgb(image.image_path)) for image in images]
        inputs = processor(text=texts, images=pictures, return_tensors="pt", padding=True, truncation=True)
        inputs = {k: v.to(self.config.device) for k, v in inputs.items()}
        with torch.no_grad():
            image_embeds = model.get_image_features(pixel_values=inputs["pixel_values"])
            text_embeds = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
        image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
        text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
        cosine = torch.nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
        return [[(LABEL, 100.0 * max(float(c), 0.0))] for c in cosine]

    def aggregate(self, images: Sequence, detections: dict[int, Detections]) -> list[MetricValue]:
        scores = [dict(self.scored(detections, image)).get(LABEL, 0.0) for image in images]
        n = len(scores)
        mean = sum(scores) / n if n else 0.0
        low = high = None
        if n > 1:  # normal 95% interval of the mean
            sd = math.sqrt(sum((s - mean) ** 2 for s in scores) / (n - 1))
            low, high = mean - 1.96 * sd / math.sqrt(n), mean + 1.96 * sd / math.sqrt(n)
        return [MetricValue("clip_score", mean, n, low, high, self.protocol())]
