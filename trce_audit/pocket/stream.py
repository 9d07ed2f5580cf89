"""The pocket model's training data: an endless stream of rendered scenes and their captions.

Batches travel as packed numpy arrays (cheap to pickle into data-loader workers) and are rendered on the
training device by ``to_dev``.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import CLIPTokenizer

from . import captions, world
from .tokenizer import MAX_LENGTH


class WorldStream(torch.utils.data.IterableDataset):
    """Endless batches: packed scene arrays, token ids [B,77], caption targets [B,7]."""

    def __init__(self, batch: int, seed: int, tokenizer_dir: str, p_drop: float = 0.1, pad_longest: bool = False):
        self.batch, self.seed, self.tokenizer_dir, self.p_drop = batch, seed, tokenizer_dir, p_drop
        self.pad_longest = pad_longest

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, wid])
        tok = CLIPTokenizer.from_pretrained(self.tokenizer_dir)
        while True:
            scenes, caps, tg = captions.training_batch(self.batch, rng, self.p_drop)
            # pad_longest: pad only to the batch's longest caption.  With CLIP's causal attention the
            # states at those positions equal the ones of the 77-token padded input.
            ids = tok(caps, padding="longest" if self.pad_longest else "max_length", max_length=MAX_LENGTH,
                      truncation=True, return_tensors="np").input_ids.astype(np.int64)
            p = world.pack(scenes)
            p["labels_kinds"] = world.labels(scenes)["kinds"].numpy()
            p["labels_colours"] = world.labels(scenes)["colours"].numpy()
            p["labels_bg"] = world.labels(scenes)["background"].numpy()
            yield p, ids, tg


def make_loader(batch, seed, tokenizer_dir, p_drop, workers, pad_longest=False):
    ds = WorldStream(batch, seed, tokenizer_dir, p_drop, pad_longest)
    if workers <= 0:
        return iter(ds)
    dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, prefetch_factor=4,
                                     persistent_workers=False)
    return iter(dl)


def to_dev(p, ids, tg, device, render=True):
    img = world.render_packed({k: v for k, v in p.items() if not k.startswith("labels")}, device) if render else None
    ids = torch.as_tensor(ids).to(device)
    tg = torch.as_tensor(tg).to(device)
    lab = {k[7:]: torch.as_tensor(v).to(device) for k, v in p.items() if k.startswith("labels")}
    return img, ids, tg, lab
