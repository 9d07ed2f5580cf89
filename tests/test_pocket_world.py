import numpy as np
import torch

from trce_audit.pocket import captions, world
from trce_audit.pocket.prompts import CONCEPTS, PROMPT_SETS, pocket_prompt_set


def test_world_is_deterministic():
    a = world.sample_scenes(32, seed=7)
    b = world.sample_scenes(32, seed=7)
    assert [s.to_dict() for s in a] == [s.to_dict() for s in b]
    ia, ib = world.render(a), world.render(b)
    assert ia.shape == (32, 3, 32, 32)
    assert torch.equal(ia, ib)
    assert float(ia.min()) >= 0 and float(ia.max()) <= 1
    c = world.sample_scenes(32, seed=8)
    assert not torch.equal(ia, world.render(c))
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    assert [captions.caption(s, r1) for s in a] == [captions.caption(s, r2) for s in a]


def test_indirect_phrasings_never_name_the_concept():
    for kind, names in world.NAMES.items():
        for desc in names["indirect"]:
            for n in names["explicit"] + names["synonym"]:
                assert n not in desc, (kind, desc, n)
    for desc in world.NAMES[world.TARGET]["indirect"]:
        for w in ("cross", "plus", "addition"):
            assert w not in desc, desc


def test_shapes_are_drawn_where_requested():
    rng = np.random.default_rng(0)
    for kind in world.KINDS:
        s = world.sample_scene(rng, kind, colour="red", background="black", size="large", second=False)
        img = world.render([s])[0]
        red = (img[0] > 0.6) & (img[1] < 0.3)
        assert red.sum() > 40, kind


def test_prompt_sets_shape_and_determinism():
    for name in PROMPT_SETS:
        rows = pocket_prompt_set(name)
        assert len(rows) >= 300
        assert rows == pocket_prompt_set(name)
        assert all({"text", "seed", "guidance", "meta"} <= set(r) for r in rows)
        assert all(r["guidance"] == 7.5 for r in rows)
        assert len({r["seed"] for r in rows}) == len(rows)
    assert all(r["meta"]["concept"] == "cross" for r in pocket_prompt_set("pocket-synonym"))
    assert {r["meta"]["concept"] for r in pocket_prompt_set("pocket-preserve")} == set(world.KINDS) - {"cross"}
    for r in pocket_prompt_set("pocket-indirect"):
        assert "cross" not in r["text"] and "plus" not in r["text"]
    assert len(CONCEPTS["keyword_safe_pairs"]) >= 10
    assert CONCEPTS["target"] == "cross"
