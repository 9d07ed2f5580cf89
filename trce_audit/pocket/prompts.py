"""Prompt sets generated from the pocket caption grammar, and concept metadata for erasers.

    from trce_audit.pocket.prompts import pocket_prompt_set, CONCEPTS, PROMPT_SETS
    rows = pocket_prompt_set("pocket-explicit")   # list of {text, seed, guidance, meta}

Every row's ``meta["concept"]`` is the concept the row requests (for pocket-general the
first object's kind; ``meta["concepts"]`` lists all kinds requested).  Deterministic: the
same name always yields the same rows.
"""

from __future__ import annotations

import copy
import functools

import numpy as np

from . import captions, world

GUIDANCE = 7.5
N_CONTEXTS = 300
N_PRESERVE_PER_CONCEPT = 60
N_GENERAL = 1000

PROMPT_SETS = ("pocket-explicit", "pocket-synonym", "pocket-indirect", "pocket-preserve", "pocket-general")
_SET_SEED = {name: 1000 * (i + 1) for i, name in enumerate(PROMPT_SETS)}

CONCEPTS: dict = {
    "target": world.TARGET,
    "stands_in_for": "nudity",
    "safe_substitute": world.SAFE_SUBSTITUTE,
    "keywords": world.NAMES[world.TARGET]["explicit"] + world.NAMES[world.TARGET]["synonym"],
    "indirect_descriptions": [s.replace("{a} ", "a ") for s in world.NAMES[world.TARGET]["indirect"]],
    "keyword_safe_pairs": copy.deepcopy(world.KEYWORD_SAFE_PAIRS),
    "erase_sets": ["pocket-explicit", "pocket-synonym", "pocket-indirect"],
    "preserve_sets": ["pocket-preserve"],
    "general_sets": ["pocket-general"],
    "all_concepts": list(world.KINDS),
    "other_concepts": [k for k in world.KINDS if k != world.TARGET],
    "names": copy.deepcopy(world.NAMES),
    "detector_concepts": list(world.KINDS),
}


def contexts(n: int, seed: int = 777) -> list[dict]:
    """Deterministic contexts (colour, background, size, second object, mentions)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        bg = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
        col = world._colour_for(rng, bg)
        second = None
        if rng.random() < 0.3:
            second = world.KINDS[rng.integers(len(world.KINDS))]
        out.append({
            "colour": col,
            "background": bg,
            "size": world.SIZES[rng.integers(2)],
            "second": second,
            "second_colour": world._colour_for(rng, bg, avoid=col),
            "say_size": bool(rng.random() < 0.5),
            "say_background": bool(rng.random() < 0.85),
            "prefix": world.PREFIXES[rng.integers(len(world.PREFIXES))],
            "name_index": int(rng.integers(1_000_000)),
        })
    return out


def _name(kind: str, phrasing: str, idx: int) -> str:
    names = world.NAMES[kind][phrasing]
    return names[idx % len(names)]


def _phrase(kind: str, phrasing: str, colour: str, size: str | None, idx: int) -> str:
    adjs = ([size] if size else []) + [colour]
    name = _name(kind, phrasing, idx)
    if phrasing == "indirect":
        head = " ".join(adjs)
        return name.replace("{a}", captions.article(head) + " " + head)
    body = " ".join(adjs + [name])
    return captions.article(body) + " " + body


def build_prompt(kind: str, phrasing: str, ctx: dict, *, allow_target_second: bool = True) -> tuple[str, dict]:
    """``allow_target_second`` False replaces a second object that would be the target: a preserve
    prompt that asks for the erased concept could not tell leakage from obedience."""
    second = ctx["second"]
    if second == kind or (second == world.TARGET and not allow_target_second):
        second = next(k for k in world.KINDS if k != kind and k != world.TARGET) if kind != world.TARGET else "circle"
    size = ctx["size"] if (ctx["say_size"] and second is None) else None
    text = ctx["prefix"] + _phrase(kind, phrasing, ctx["colour"], size, ctx["name_index"])
    concepts = [kind]
    if second is not None:
        text += " and " + _phrase(second, "explicit", ctx["second_colour"], None, 0)
        concepts.append(second)
    if ctx["say_background"]:
        bgp = world.BACKGROUND_PHRASES[ctx["background"]]
        text += " " + bgp[ctx["name_index"] % len(bgp)]
    meta = {
        "concept": kind,
        "concepts": concepts,
        "phrasing": phrasing,
        "is_target": kind == world.TARGET,
        "colour": ctx["colour"],
        "background": ctx["background"] if ctx["say_background"] else None,
        "size": size,
        "second": second,
    }
    return text, meta


@functools.lru_cache(maxsize=None)
def _build(name: str) -> tuple:
    base_seed = _SET_SEED[name]
    rows = []
    if name in ("pocket-explicit", "pocket-synonym", "pocket-indirect"):
        phrasing = name.split("-")[1]
        for i, ctx in enumerate(contexts(N_CONTEXTS)):
            text, meta = build_prompt(world.TARGET, phrasing, ctx)
            rows.append({"text": text, "seed": base_seed + i, "guidance": GUIDANCE,
                         "meta": dict(meta, set=name, index=i)})
    elif name == "pocket-preserve":
        # concepts interleaved, so that the first N rows (--limit N) cover every concept evenly
        kinds = [k for k in world.KINDS if k != world.TARGET]
        for j, ctx in enumerate(contexts(N_CONTEXTS)[:N_PRESERVE_PER_CONCEPT]):
            for kind in kinds:
                i = len(rows)
                text, meta = build_prompt(kind, "explicit", ctx, allow_target_second=False)
                rows.append({"text": text, "seed": base_seed + i, "guidance": GUIDANCE,
                             "meta": dict(meta, set=name, index=i, context=j)})
    elif name == "pocket-general":
        rng = np.random.default_rng(base_seed)
        for i in range(N_GENERAL):
            scene = world.sample_scene(rng)
            m: dict = {}
            text = captions.caption(scene, rng, meta=m)
            kinds = [o["kind"] for o in m["objects"]]
            rows.append({"text": text, "seed": base_seed + i, "guidance": GUIDANCE,
                         "meta": {"set": name, "index": i, "concept": kinds[0], "concepts": kinds,
                                  "phrasing": m["objects"][0]["phrasing"],
                                  "is_target": world.TARGET in kinds,
                                  "colour": m["objects"][0]["colour"], "background": m["background"],
                                  "size": m["objects"][0]["size"],
                                  "second": kinds[1] if len(kinds) > 1 else None}})
    else:
        raise KeyError(f"unknown pocket prompt set {name!r}; known: {PROMPT_SETS}")
    return tuple(rows)


def pocket_prompt_set(name: str) -> list[dict]:
    """Rows ``{text, seed, guidance, meta}`` of a pocket prompt set (fresh copies)."""
    return copy.deepcopy(list(_build(name)))


def keyword_safe_pairs() -> list[list[str]]:
    return copy.deepcopy(world.KEYWORD_SAFE_PAIRS)
