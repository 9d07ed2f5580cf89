"""RECE (Gong et al., ECCV 2024, arXiv 2407.12383): UCE, then ``epochs`` rounds of closed-form
re-erasure. Each round finds, in closed form, the embedding the *edited* model maps closest to what the
*original* model made of the concept,
    c_adv = (Σ_l W_lᵀ·W_l + r·I)⁻¹ · Σ_l W_lᵀ·W⁰_l · c      (over every cross-attention key/value projection),
and erases it with UCE's closed form (all 77 rows of c_adv onto the guide's rows, retained texts kept).
Follows ``train.py``, ``utils/embedding_calculation/close_form_emb.py`` (``close_form_emb_regzero``) and
``erase_methods/uce.py`` (``edit_model_adversarial``) of github.com/CharlesGong12/RECE (docs/fidelity.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigError
from ..models.tokens import token_count
from .base import EraseContext
from .uce import UCE, UCEConfig, closed_form_edit, last_token_rows

if TYPE_CHECKING:
    from ..data.concepts import Concept


@dataclass(frozen=True)
class RECEConfig(UCEConfig):
    """UCE's keys configure the first edit; the ``rece_*`` keys and ``epochs``/``regular_scale`` the rounds."""

    prompt: str = ""  # the one phrase both phases erase (the reference: "nudity"); "" = the concept's phrases
    epochs: int = 3
    regular_scale: float = 0.1  # r, pulls c_adv towards 0 (the reference's close_regzero)
    rece_erase_scale: float = 1.0
    rece_preserve_scale: float = 0.1
    rece_lamb: float = 0.1
    rece_retain: tuple[str, ...] = ()  # texts kept in each round; () = " " once per erased phrase (the reference's)
    rece_rows: str = "all"  # rows re-erased: "all" 77 (the reference) or each phrase's "last" content token
    # The first edit: the reference starts from UCE's older script, which erases every row from the
    # phrase's last content token on ("from-last") and keeps the empty prompt at this scale; "last" and
    # 0 are our UCE's own edit (one row, nothing kept).
    uce_rows: str = "from-last"
    uce_keep_empty: float = 1.0

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {**UCEConfig.CHOICES, "rece_rows": ("all", "last"), "uce_rows": ("from-last", "last")}

    @classmethod
    def for_world(cls, world: str = "sd") -> "RECEConfig":
        if world == "sd":
            # README/scripts/nudity.sh: UCE "nudity" towards the unconditional prompt without preservation,
            # then 3 rounds with regular_scale 0.1, preserve_scale 0.1, lamb 0.1
            return cls(prompt="nudity", guide="empty", n_preserve=0, caption_set="coco-3k")
        if world == "pocket":
            # UCE's pocket preset (the other shapes' names pinned) for the first edit; measured on the
            # shipped model (docs/fidelity.md, RECE): 14 phrases x 77 rows span the whole 96-dim text
            # space, so at the SD scales the rounds overwrite every direction; a 10x weaker erase and
            # the other shapes' names pinned at 100 (as in UCE's preset) damage least
            base = UCEConfig.for_world("pocket")
            values = {f.name: getattr(base, f.name) for f in dataclasses.fields(UCEConfig)}
            return cls(**values, rece_retain=base.preserve_concepts, rece_erase_scale=0.1, rece_preserve_scale=100.0,
                       uce_rows="last", uce_keep_empty=0.0)
        raise ConfigError(f"unknown world {world!r}; expected sd or pocket")

    def validate(self) -> None:
        super().validate()
        if self.epochs < 0:
            raise ConfigError(f"config key 'epochs' must be >= 0, got {self.epochs}")
        for key in ("regular_scale", "rece_erase_scale", "rece_preserve_scale", "rece_lamb", "uce_keep_empty"):
            if getattr(self, key) < 0:
                raise ConfigError(f"config key {key!r} must be >= 0, got {getattr(self, key)!r}")
        if self.regular_scale == 0 and self.epochs:
            raise ConfigError("config key 'regular_scale' must be > 0, otherwise the adversarial embedding is not unique")


def reference_start_rows(tokenizer, text: str, guide: str, length: int = 77) -> tuple[slice, slice]:
    """The rows UCE's older script erases for ``text`` onto ``guide``: from each one's last content token
    to the end of the sequence, the longer prompt's offset cut from the other's end so both spans have
    the same length (unified-concept-editing train-scripts/train_erase.py, edit_model, read at 18287f6)."""
    last, last_guide = token_count(tokenizer, text), token_count(tokenizer, guide)
    farthest = max(last, last_guide)
    return slice(last, length - (farthest - last)), slice(last_guide, length - (farthest - last_guide))


def reference_start(pipe, texts: list[str], guides: list[str], config: "RECEConfig", device) -> int:
    """The reference's first edit: every phrase's rows from its last content token on, onto the guide's,
    the empty prompt's 77 rows kept at ``uce_keep_empty``, UCE's closed form with its scales."""
    import torch

    from .common import encode_prompts

    length = pipe.tokenizer.model_max_length
    erase, onto = [], []
    for text, guide in zip(texts, guides):
        rows, guide_rows = reference_start_rows(pipe.tokenizer, text, guide, length)
        emb = encode_prompts(pipe, [text, guide], device).double()
        erase.append(emb[0, rows])
        onto.append(emb[1, guide_rows])
    keep = encode_prompts(pipe, [""], device).double()[0]
    return closed_form_edit(pipe, torch.cat(erase), torch.cat(onto), keep, erase_scale=config.erase_scale,
                            preserve_scale=config.uce_keep_empty, lamb=config.lamb)


def adversarial_rows(pipe, originals: list, rows, regular_scale: float):
    """c_adv for a block of rows [N, D]: what the edited projections must read to give what the original
    ones gave for ``rows``, ridge-regularised towards 0 (the reference's close_form_emb_regzero)."""
    import torch

    from ..models.families.sd import cross_attention_projections

    layers = [layer.weight.data.double() for _, layer in cross_attention_projections(pipe.unet)]
    eye = torch.eye(layers[0].shape[1], dtype=torch.float64, device=rows.device)
    gram = sum(w.T @ w for w in layers) + regular_scale * eye
    coupling = sum(w.T @ w0 for w, w0 in zip(layers, originals))
    return rows @ torch.linalg.solve(gram, coupling).T


class RECE(UCE):
    name: ClassVar[str] = "rece"
    version: ClassVar[str] = "2"  # 2: the reference's UCE start (rows from the last content token on, '' kept)
    Config: ClassVar[type[RECEConfig]] = RECEConfig
    description: ClassVar[str] = "RECE: UCE, then closed-form re-erasure of adversarially found embeddings"
    families: ClassVar[tuple[str, ...]] = ("sd",)  # UCE's families are not yet RECE's: its rounds read SD's UNet

    def apply(self, pipe, concept: "Concept", context: EraseContext):
        import torch

        from ..models.families.sd import cross_attention_projections
        from .common import encode_prompts

        config = self.config
        if config.prompt:
            safe = concept.safe_phrases[0] if concept.safe_phrases else ""
            concept = dataclasses.replace(concept, pairs=((config.prompt, safe),))
        originals = [layer.weight.data.double().clone() for _, layer in cross_attention_projections(pipe.unet)]
        texts = list(concept.keywords)
        guides = list(concept.safe_phrases) if config.guide == "safe" else [" "] * len(texts)
        if config.uce_rows == "from-last":
            edited = reference_start(pipe, texts, guides, config, context.device)
            context.progress("rece: reference UCE start", 1, 1)
            stats = {"erase_prompts": texts, "guide_prompts": guides, "uce_rows": "from-last",
                     "uce_keep_empty": config.uce_keep_empty, "edited": edited}
        else:
            stats, _ = super().apply(pipe, concept, context)
        retain = list(config.rece_retain) or [" "] * len(texts)
        if config.rece_rows == "last":
            rows, guide_rows, keep_rows = (last_token_rows(pipe, t, context.device)[:, None] for t in (texts, guides, retain))
            guide_rows, keep_rows = guide_rows.flatten(0, 1), keep_rows.flatten(0, 1)
        else:
            rows = encode_prompts(pipe, texts, context.device).double()
            guide_rows = encode_prompts(pipe, guides, context.device).double().flatten(0, 1)
            keep_rows = encode_prompts(pipe, retain, context.device).double().flatten(0, 1)
        shift: list[float] = []
        for epoch in range(config.epochs):
            adv = adversarial_rows(pipe, originals, rows.flatten(0, 1), config.regular_scale)
            shift.append(float((adv - rows.flatten(0, 1)).norm() / rows.flatten(0, 1).norm()))
            closed_form_edit(
                pipe, adv, guide_rows, keep_rows,
                erase_scale=config.rece_erase_scale, preserve_scale=config.rece_preserve_scale, lamb=config.rece_lamb,
            )
            context.progress("rece: re-erasure rounds", epoch + 1, config.epochs)
        with torch.no_grad():
            after = adversarial_rows(pipe, originals, rows.flatten(0, 1), config.regular_scale)
        stats = {
            **stats, "uce_prompts": stats.pop("erase_prompts"), "rece_prompts": texts, "rece_guides": guides,
            "rece_retain": retain, "epochs": config.epochs,
            # ‖c_adv − c‖ / ‖c‖ per round and after the last: how far the nearest embedding that still
            # reproduces the concept had moved from the concept's own
            "adversarial_shift": shift, "adversarial_shift_after": float((after - rows.flatten(0, 1)).norm() / rows.flatten(0, 1).norm()),
        }
        return stats, {"adversarial_shift": shift}
