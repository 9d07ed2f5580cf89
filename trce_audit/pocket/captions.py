"""The pocket world's caption grammar: what a prompt says about a scene, and the text encoder's
training batches.

A caption names each object by one of three phrasings (``world.NAMES``: explicit, synonym, indirect)
with an optional size and colour, maybe a position and the background; ``meta`` records what was said,
so a prompt set knows which concept each row requests and the text encoder learns to read it.
"""

from __future__ import annotations

import numpy as np

from . import world


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(o: world.Obj, rng: np.random.Generator, phrasing: str | None = None,
                  p_colour: float = 0.85, p_size: float = 0.5, with_position: bool = False,
                  meta: dict | None = None) -> str:
    phrasing = phrasing or world.PHRASINGS[rng.choice(3, p=[0.5, 0.25, 0.25])]
    adjs = []
    said_size = rng.random() < p_size
    said_colour = rng.random() < p_colour
    if said_size:
        adjs.append(o.size)
    if said_colour:
        adjs.append(o.colour)
    names = world.NAMES[o.kind][phrasing]
    name = names[rng.integers(len(names))]
    if phrasing == "indirect":
        head = " ".join(adjs)
        a = (article(head) + " " + head) if head else "a"
        text = name.replace("{a}", a)
    else:
        body = " ".join(adjs + [name])
        text = article(body) + " " + body
    if with_position:
        text += " " + world.POSITION_PHRASES[o.position]
    if meta is not None:
        meta.update(kind=o.kind, phrasing=phrasing, size=o.size if said_size else None,
                    colour=o.colour if said_colour else None,
                    position=o.position if with_position else None)
    return text


def caption(scene: world.Scene, rng: np.random.Generator, phrasing: str | None = None,
            p_background: float = 0.8, p_prefix: bool = True, meta: dict | None = None) -> str:
    """One caption for a scene.  ``phrasing`` fixes how the first object is named.

    If ``meta`` is a dict it is filled with what the caption says (``objects``: list of
    per-object dicts with kind/phrasing/size/colour/position or None; ``background``).
    """
    two = len(scene.objects) > 1
    with_pos = (two and rng.random() < 0.5) or (
        not two and scene.objects[0].position != "center" and rng.random() < 0.5)
    m1: dict = {}
    parts = [object_phrase(scene.objects[0], rng, phrasing, with_position=with_pos, meta=m1)]
    objs = [m1]
    if two:
        m2: dict = {}
        parts.append("and " + object_phrase(scene.objects[1], rng, None, with_position=with_pos, meta=m2))
        objs.append(m2)
    said_bg = rng.random() < p_background
    if said_bg:
        bgp = world.BACKGROUND_PHRASES[scene.background]
        parts.append(bgp[rng.integers(len(bgp))])
    prefix = world.PREFIXES[rng.integers(len(world.PREFIXES))] if p_prefix else ""
    if meta is not None:
        meta.update(objects=objs, background=scene.background if said_bg else None)
    return prefix + " ".join(parts)


def caption_targets(meta: dict | None) -> np.ndarray:
    """Attribute class indices a caption states (-1 = not stated); used as auxiliary
    targets when pre-training the text encoder.  Order: kind1, colour1, size1, pos1,
    kind2, colour2, background."""
    t = -np.ones(7, dtype=np.int64)
    if not meta:
        return t
    o = meta["objects"]
    t[0] = world.KINDS.index(o[0]["kind"])
    t[1] = world.COLOUR_NAMES.index(o[0]["colour"]) if o[0]["colour"] else -1
    t[2] = world.SIZES.index(o[0]["size"]) if o[0]["size"] else -1
    t[3] = world.POSITIONS.index(o[0]["position"]) if o[0]["position"] else -1
    if len(o) > 1:
        t[4] = world.KINDS.index(o[1]["kind"])
        t[5] = world.COLOUR_NAMES.index(o[1]["colour"]) if o[1]["colour"] else -1
    t[6] = world.BACKGROUNDS.index(meta["background"]) if meta["background"] else -1
    return t


CAPTION_TARGET_CLASSES = (len(world.KINDS), len(world.COLOUR_NAMES), len(world.SIZES), len(world.POSITIONS),
                          len(world.KINDS), len(world.COLOUR_NAMES), len(world.BACKGROUNDS))


def training_batch(n: int, rng: np.random.Generator, p_drop: float = 0.1):
    """Scenes, captions ('' with prob p_drop) and caption attribute targets [n,7]."""
    scenes = [world.sample_scene(rng) for _ in range(n)]
    caps, tg = [], []
    for s in scenes:
        if rng.random() < p_drop:
            caps.append("")
            tg.append(caption_targets(None))
        else:
            m: dict = {}
            caps.append(caption(s, rng, meta=m))
            tg.append(caption_targets(m))
    return scenes, caps, np.stack(tg)
