"""pocket-flux's training data: the VAE's latent statistics, T5's token ids and pre-training read-out,
and the transformer's (latents, conditioning) batches, encoded through the FLUX family (the objectives
are in ``flux_fit.py``)."""

from __future__ import annotations

import dataclasses

import torch

from .flux_models import EOS_ID, T5_LENGTH
from .stream import to_dev


def t5_ids(clip_ids, length: int = T5_LENGTH):
    """CLIP-tokenised ids padded to 77 -> what the same tokenizer gives at ``length`` (the stream tokenises
    once): the first ``length`` ids, and where the caption runs on, the end token last, as truncation puts it."""
    ids = clip_ids[:, :length].clone()
    ids[ids[:, length - 1] != EOS_ID, length - 1] = EOS_ID
    return ids


def t5_mean(t5, clip_ids):
    """T5's pre-training read-out: the mean of its states over the whole padded prompt, which the transformer
    reads as a sequence (T5 attends both ways, so every state may carry every attribute)."""
    return t5(t5_ids(clip_ids))[0].mean(1)


@torch.no_grad()
def latent_stats(vae, loader, device, batches: int) -> tuple[float, float]:
    """FLUX's VAE normalisation, measured on renders: shift = latent mean, scale = 1 / std around it."""
    zs = [vae.encode(to_dev(*next(loader), device)[0] * 2 - 1).latent_dist.sample().float() for _ in range(batches)]
    z = torch.cat(zs)
    return float(z.mean()), float(1.0 / z.std())


class Batches:
    """Endless (latents, Conditioning) batches. ``pool`` > 0 (the cheap CPU setting, as the pocket SD
    trainer's UNet phase): keep the first ``pool`` batches' VAE posteriors and text states and cycle over
    them in a fresh order each pass, drawing a new posterior sample each time; 0: encode every batch."""

    def __init__(self, family, pipe, loader, device, pool: int, generator):
        self.family, self.pipe, self.loader, self.device, self.pool = family, pipe, loader, device, pool
        self.gen, self.filling, self.full, self.order, self.size, self.template = generator, [], None, [], 0, None

    @torch.no_grad()
    def encode(self):
        x, ids, _, _ = to_dev(*next(self.loader), self.device)
        dist = self.pipe.vae.encode(x * 2 - 1).latent_dist
        cond = self.family.encode_ids(self.pipe, {"clip_l": ids, "t5": t5_ids(ids)}, torch.float32)
        return dist.mean, dist.std, cond

    def __next__(self):
        if self.full is None:
            mean, std, cond = self.encode()
            self.template, self.size = cond, len(mean)
            if self.pool:
                self.filling.append([f.half().cpu() for f in (mean, std, cond.states, cond.pooled)])
                if len(self.filling) == self.pool:
                    self.full, self.filling = [torch.cat(f) for f in zip(*self.filling)], []
        else:
            if not self.order:
                self.order = torch.randperm(len(self.full[0]), generator=self.gen, device=self.gen.device).tolist()
            index = torch.tensor([self.order.pop() for _ in range(min(self.size, len(self.order)))])
            mean, std, states, pooled = (f[index].to(self.device).float() for f in self.full)
            # The family's own Conditioning, with the pooled rows in place of the last encoded ones.
            cond = dataclasses.replace(self.template, states=states, pooled=pooled)
        noise = torch.randn(mean.shape, generator=self.gen, device=self.gen.device).to(self.device)
        return self.family.encoded_latents(self.pipe, mean + std * noise), cond
