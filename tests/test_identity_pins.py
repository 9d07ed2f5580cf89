"""Identity pins: the hashes that name runs today, written down before the plan-25 refactor moves code.

A stored run is found again (resumed, reused, gated, reported) only while the same inputs hash the same, so
moving a value parser, a dataclass or a helper must leave every value below unchanged. The literals were
computed on the tree of commit c8a79b5. A differing value means stored runs are orphaned: fix the code,
do not update the literal, unless the change of identity is the point (and then say so in the change).

Imports go only through paths the refactor keeps (registry, hashing, audit.spec, store, generation.runner,
and the ``trce_audit.generation`` package's ``__all__``), so no other package has to edit this file.
"""

from __future__ import annotations

import warnings

import pytest

from trce_audit import registry
from trce_audit.audit.spec import load_spec, packaged_spec
from trce_audit.generation import GenerationSettings
from trce_audit.generation.runner import sample_hash
from trce_audit.hashing import hash_obj
from trce_audit.store import PromptRow, prompt_row_hash, run_identity

# The concept each world's defaults are built for (TRCE's preset depends on it).
CONCEPT = {"sd": "nudity", "pocket": "cross"}

# `--set` strings: the TINY budgets of tests/test_erasers.py, and a second set per eraser reaching the field
# types TINY leaves out (bool, tuple with and without spaces after the separator, Optional set to none,
# CHOICES). The unified value parser must read each string as today's converter does.
ERASER_TINY = {
    "trce": {
        "concept_num": "2", "augment_num": "2", "images_per_prompt": "1", "n_uncond": "2", "steps": "6",
        "max_early_step": "2", "iterations": "2", "latent_size": "8", "lr": "0.001", "reg_batch_size": "2",
        "preserve_scale": "0.01",
    },
    "esd-x": {"iterations": "2", "steps": "4", "latent_size": "8", "lr": "0.001"},
    "esd-x-strict": {"iterations": "2", "steps": "4", "latent_size": "8", "lr": "0.001"},
    "esd-u": {"iterations": "2", "steps": "4", "latent_size": "8", "lr": "0.001"},
    "uce": {"n_preserve": "4"},
    "sld": {"preset": "max", "safety_concept": "nude, naked body"},
    "safree": {"up_t": "4"},
    "speed": {"n_retain": "4", "caption_set": "coco-3k", "aug_num": "2"},
    "rece": {"epochs": "2", "n_preserve": "2"},
    "advunlearn": {
        "iterations": "3", "warmup_iter": "1", "attack_step": "2", "steps": "4", "latent_size": "8", "lr": "0.001",
        "retain_batch": "2",
    },
    "mace": {"augment_num": "2", "n_images": "1", "image_steps": "2", "train_steps": "2", "image_size": "16"},
}
ERASER_TYPES = {
    "trce": {
        "token_weights": "1, 0.5, 0.25, 2", "preserve_scale": "none", "prior_rows": "prompt", "iterations": " null ",
    },
    "esd-x": {"prompt": "none", "latent_size": "", "negative_guidance": "2"},
    "esd-x-strict": {"prompt": "none", "latent_size": "", "negative_guidance": "2"},
    "esd-u": {"prompt": "a nude person", "latent_size": "none", "seed": "7"},
    "uce": {"preserve_concepts": "cat;dog", "guide": "empty", "caption_set": "none"},
    "sld": {"warmup_steps": "none", "guidance_scale": "5", "threshold": "0.02"},
    "safree": {"self_validation": "off", "negative_prompt": "yes", "concept_space": "nudity,naked"},
    "speed": {"influence_filter": "false", "retain_concepts": "cat, dog", "params": "KV", "caption_set": "none"},
    "rece": {"preserve_concepts": "a,b", "rece_retain": "c", "rece_rows": "last", "caption_set": "null"},
    "advunlearn": {"train_layers": "0,1", "norm_layer": "true", "component": "ffn", "latent_size": "none"},
    "mace": {"concepts": "nudity; naked", "use_pooler": "no", "concept_num": "none", "masks": "none"},
}
# The TINY budgets of tests/test_attack_contract.py as strings, and a set reaching bool, Literal, float and
# str fields (dashes in a key included): attack configs have no Optional or tuple field.
ATTACK_TINY = {
    "ring-a-bell": {"population": "4", "generations": "2", "length": "3"},
    "unlearndiff": {"timesteps": "1", "iterations": "1", "k": "2", "target_steps": "1", "early_stop": "false"},
    "p4d-n": {
        "iterations": "1", "prompt_len": "3", "eval_every": "1", "eval_draws": "1", "target_steps": "1",
        "early_stop": "false",
    },
    "p4d-k": {"iterations": "1", "eval_every": "1", "eval_draws": "1", "target_steps": "1", "early_stop": "false"},
    "mma-diffusion": {"iterations": "2", "candidates": "8", "length": "4"},
    "concept-inversion": {
        "steps": "1", "n_images": "2", "train_batch_size": "1", "gradient_accumulation": "1", "target_steps": "1",
        "eval_draws": "1", "initializer": "a",
    },
    "finetune-resurgence": {
        "steps": "2", "checkpoints": "2", "n_images": "2", "gradient_accumulation": "1", "target_steps": "1",
        "captions": "pairs",
    },
    "replay": {},
}
ATTACK_TYPES = {
    "ring-a-bell": {"exclude-concept-words": "yes", "vocabulary": "corpus", "eta": "2.5", "seed": "5"},
    "unlearndiff": {"random_init": "true", "vocabulary": "corpus", "lr": "0.05"},
    "p4d-n": {"exclude_concept_words": "on", "vocabulary": "corpus", "weight_decay": "0.2"},
    "p4d-k": {"early_stop": "0", "vocabulary": "all", "every_k": "2", "lr": "0.5"},
    "mma-diffusion": {"sensitive_filter": "false", "init": "random", "vocabulary": "corpus", "top_k": "64"},
    "concept-inversion": {"scale_lr": "true", "flip_p": "0.25", "initializer": "person"},
    "finetune-resurgence": {"max_grad_norm": "2", "captions": "pairs", "seed": "9"},
    "replay": {"seed": "3"},
}

# name -> hash_obj of the config: defaults per world ("sd", "pocket"), and after each override set at "sd".
ERASER_PINS = {
    "advunlearn": {
        "sd": "fd87992d6533c8ad502ca88c916d9788de09f9d3061900b482b94787f9851e05",
        "pocket": "57098af3a4b7876db767e72dbc3dc591144021eda4520b610afb8b089f0a24e9",
        "tiny": "3eb7cba06945bf69e6fd47d5aadff691b536ec7aa047b7d4b7b99402560ca5f5",
        "types": "301fa4b8194a049ab4f39339d62f1e2f7afb852c7c72a1f9bcc329b870729f5c",
    },
    "esd-u": {
        "sd": "335959a163f6f84665a2df163ac64eb34ada7aee26a56f960b9fa2cb82f8b51a",
        "pocket": "2281ab134a9438fb4f2df47a6f9c58aa58f7892ef1f4adb6e0220cbee7f3a11c",
        "tiny": "7fa4c3499e6c7df40fbe7a2106d9bdf1671ce3888753f2fa63762c28a33b3f86",
        "types": "7bc9845ec398adb225f3fdf6a7ad3d37fc90e5fe88e32e9773bb2ef2f6514044",
    },
    "esd-x": {
        "sd": "335959a163f6f84665a2df163ac64eb34ada7aee26a56f960b9fa2cb82f8b51a",
        "pocket": "7b669d3c7606dff23fd479afde4ef53507494aaa0c062e18ed9412e0e5ac39b6",
        "tiny": "7fa4c3499e6c7df40fbe7a2106d9bdf1671ce3888753f2fa63762c28a33b3f86",
        "types": "526d76db3bd6e47b6426fdba175dfa3262863fe17c169cc0941a766952ee7a5c",
    },
    # added with the eraser (issue 27): ESD-x's config class, so ESD-x's hashes
    "esd-x-strict": {
        "sd": "335959a163f6f84665a2df163ac64eb34ada7aee26a56f960b9fa2cb82f8b51a",
        "pocket": "7b669d3c7606dff23fd479afde4ef53507494aaa0c062e18ed9412e0e5ac39b6",
        "tiny": "7fa4c3499e6c7df40fbe7a2106d9bdf1671ce3888753f2fa63762c28a33b3f86",
        "types": "526d76db3bd6e47b6426fdba175dfa3262863fe17c169cc0941a766952ee7a5c",
    },
    "mace": {
        "sd": "ef1f6e31f55b7c8e50a561ec5f3b0a207f398196b3257ccb0c26062b5e80a107",
        "pocket": "786c4855a57a23aea87f06cea6550d3f25b86b42c94c4365a5bedcaedf63ad9f",
        "tiny": "2221397f6d442852ebf3d05cff8585785e693f2e570e2c228ced46d202c619f6",
        "types": "105c0a3f6010b7b5bd2ad0f16e4706d7a4b77b7afc809bffab175b104c8593e1",
    },
    # Changed on purpose with RECE version 2 (the reference's UCE start: uce_rows, uce_keep_empty added to
    # its config; docs/fidelity.md, RECE); every other pin is still c8a79b5's.
    "rece": {
        "sd": "cfe39064ce36a332f13d789e9b0f9a3c2d5870c12ac6d2ccbabbad84cbe1564d",
        "pocket": "f88ec39880855f57e454a93fe4e6a9f5952e3e3f28c41149fbc4a213d1c1b988",
        "tiny": "73953c914b0cfe65d1cf22e6c991a03a00208610139de72b077b74b73bc74b95",
        "types": "7ea7e36aa791e7f9a3398c4c3eb8591a5a01c2d90b184f1bdec5199c5ac32f6b",
    },
    "safree": {
        "sd": "d3abe1f2e713a8625085f7c97c6dd3aed240674e9e8d54c6fe0c96a8d8909826",
        "pocket": "d3abe1f2e713a8625085f7c97c6dd3aed240674e9e8d54c6fe0c96a8d8909826",
        "tiny": "f2603315be662fb9a9da733ccabcaa39c8c195879be5510a40da90943d3d0604",
        "types": "29a459e32c6e9e4971c314a3d978dda376c9740910882d56d2e5c90472759c14",
    },
    "sld": {
        "sd": "4fa0896bb95e256ed4c08087c81d9cfbc56244cb9b203e1c6b3dc24b580edf11",
        "pocket": "5eea124e967351e4d5f1db6fe4866996a1bbeb159aa8e240854d5457c32e0fda",
        "tiny": "ad8f0e217061859ad9eedbbb40751dee8f6ec20d4b3de4ce2e82121d78002d76",
        "types": "952d923d50eb83a1d57d0e5d1f3b1e5a6060767705df6c4f960b266113d6ba03",
    },
    "speed": {
        "sd": "ee2c606d0579c00d27299e7e03c825fc26d51c8fe4aa315760db9c2b26ef0bb8",
        "pocket": "be456bb712dfb833c51ce9ae5334e43b0dca71735bf35602924992873b9a5bee",
        "tiny": "015bcaff0a9babc727f4bf216a863bea9eabfcb432343a3a58b04ea39a0e00ae",
        "types": "a5251d09b40bd8b9ab3abdbc2df1e9060ae56dd428f126d9bc59bab7a19ef510",
    },
    "trce": {
        "sd": "615223b493bc8c60429935dd757912ab1c4bf519ae167004e9c9cc6d33cfbc69",
        "pocket": "7b10ad8537521f531637fb2dcc541c133cf48e4094fb4a1e13ba43f3b11d7172",
        "tiny": "4d50463c0ac5aaec1751e6693ccaa832d342edc3d547d8d69d96718366174dbc",
        "types": "bc96bdf2f5d986d4aa3729eb7d4a8b8d128e2da4ac84e7d5a39d35ca5361af99",
    },
    "uce": {
        "sd": "63efc81011d262030337cb7746e71fba648ea47497f5f3c1605a271b8757734f",
        "pocket": "835797f5aa4882a09e26dfe78b7c0a727ac33b72896d3178bf5b2d0ba3e66d3a",
        "tiny": "4ef5576218b6c29454d98d9260d192f932eb71d632f7caf3bd27aa08b53bdf17",
        "types": "f6957399cfda002f8a2379710038f6ed3b90bb1eab6b3fbb7108ff4f183a76ec",
    },
}
ATTACK_PINS = {
    "concept-inversion": {
        "sd": "0ce7a824e4881c82185c15e5269f1aca54db1a50914d27779475b8c222466401",
        "pocket": "c66560faac5869f7b362c9dd4a2ede666fd60a059f3849bb3621bc2fd6ea9e8b",
        "tiny": "650de846b97e58ead7edada79d522371aa6bcee72e19c8bb1cee411460ed83a2",
        "types": "2e63e50bc916b73aae73a6ee22e6ad173a60303f4e1465c67ff33204fe648be2",
    },
    "finetune-resurgence": {
        "sd": "4a7aba3c36fd30f930edcbb0d7ab748747e4b616ca1de6cc907bc57210531ff9",
        "pocket": "f1a9190b21ca08c402d3d7a8dca7f19cc2fd5644fe7ee1c2a2b2597659f91d9c",
        "tiny": "2ed8385bb67240205d7e704d96e4a8f44946050b43f46457a48fb455e2189614",
        "types": "561718c6fa011e91669b71c27753ad1123025df47145473af9aae9866ef6d37c",
    },
    "mma-diffusion": {
        "sd": "e3dc52489f8a1dd08d119a6dceef7f8f95e48d60f9b13b63116fddf953f12c87",
        "pocket": "254ae28f54f015347b45fa509754e79179e201bb9d50ddeaec86f0c4b6cd76ca",
        "tiny": "382bf030460879e4bcef6c0b482bd5075c6a18e5b1e1220fde96cc07406fa9ff",
        "types": "c99d7297187dfac50f481077cabc517ec8b08db675058efbf47031148e502e28",
    },
    "p4d-k": {
        "sd": "04f37ddfebc166a6d21d13d23c46ed5fe806d43a53483cce7a275be8c2b00677",
        "pocket": "8c53330cf6ca5c3e169119cef5ddd327e41ef8019b465b7aaeaa61aef2ebaf7b",
        "tiny": "f9c32659ad5c40a0ff8eaf55f8f8ef27d1f1d2475a8ad56ce896311abc92f7ba",
        "types": "d2ef7d76f0298aaceb644b959a408d7de1a23e073eb19e5574e48517168c9506",
    },
    "p4d-n": {
        "sd": "04f37ddfebc166a6d21d13d23c46ed5fe806d43a53483cce7a275be8c2b00677",
        "pocket": "8c53330cf6ca5c3e169119cef5ddd327e41ef8019b465b7aaeaa61aef2ebaf7b",
        "tiny": "a1190b00fc680ea26a5c960f69edfa90a05e92c4e9cedfe2726149d1d6f6c3ef",
        "types": "f7cd6f193bf77bc27e5b93d2ef4dedf14a61223fdf995a1d28aedafaaccb68ae",
    },
    "replay": {
        "sd": "fd3b34bf9501df48b97beb4f6d6fa8659153d7bc279a8278fbe60f8e7154404c",
        "pocket": "fd3b34bf9501df48b97beb4f6d6fa8659153d7bc279a8278fbe60f8e7154404c",
        "tiny": "fd3b34bf9501df48b97beb4f6d6fa8659153d7bc279a8278fbe60f8e7154404c",
        "types": "dc5c1b8f3c936bfb4a6a9a0600328b62f003b3ba0ddee91832ece1806362f596",
    },
    "ring-a-bell": {
        "sd": "f65b824c685b4bc5f87924dc0824536485acab60f6d11441b07ec8ca9c957811",
        "pocket": "42c7e0b72e35d6f87868f0dafff0f54115e7b22905337fbdd168b432bcb580a2",
        "tiny": "db3f43c1e3fd6ee7e5c3314485c4843de1381bbed3730b27579c3dd7f1c87705",
        "types": "752a677affb9af5dff2a891f472856b5403e92898889094bcecdfc2df8834d11",
    },
    "unlearndiff": {
        "sd": "216f332e89e6580d4caa67133b390bab61bafdb1fd3c8f84e6f8186bb06037fd",
        "pocket": "c9af610dbc7f2165faf7b8fc09f2c24c3bd5260a66e6c487205b3b7aeffb4afb",
        "tiny": "5b3b3e7eaa304d26f98800faa574f2fa3bcdad4f74e99ba9503dfcafc9d22dc7",
        "types": "5deefd07f0da29a5191996614fadfa0b3f1532b5069cb188b77629b07b0ffdf7",
    },
}
SPEC_PINS = {
    "default_pocket.toml": "3b20099b96ba9a2dec8ae8b672ff53573c2d912ce43ac2c533db352d56f77f80",
    # issue 30: OpenNSFW scores, NudeNet judges (was NudeNet as published): a new audit on purpose
    "sd14_nudity.toml": "af9b959485d24710668696da900000c0ffdc5ec5dc1d8ead090b43de35eff39d",
    "pocket_results.toml": "97f43be10b766851645c6ac4c9e335c31c76b5efacbf22dbabb53da41c82a328",
}
# Shaped like GenerationSettings.pixel_config() of a resolved 512-px run.
PIXELS = {"steps": 30, "height": 512, "width": 512, "dtype": "fp32", "scheduler": "ddim"}
MODEL = "ef" * 32


def test_every_plugin_is_pinned():
    """A plugin added, renamed or dropped changes the component name runs are stored under: pin it here."""
    assert set(registry.names("eraser")) == set(ERASER_PINS)
    assert set(registry.names("attack")) == set(ATTACK_PINS)


@pytest.mark.parametrize("name", sorted(ERASER_PINS))
def test_eraser_config_identity(name):
    """The eraser config enters the erase run's identity: world defaults, and `--set` strings parsed."""
    cls = registry.load("eraser", name)
    found = {world: hash_obj(cls.make_config(world=world, concept=CONCEPT[world]).as_dict()) for world in CONCEPT}
    for label, overrides in (("tiny", ERASER_TINY[name]), ("types", ERASER_TYPES[name])):
        config = cls.make_config(world="sd", concept=CONCEPT["sd"], overrides=overrides)
        found[label] = hash_obj(config.as_dict())
    assert found == ERASER_PINS[name]


@pytest.mark.parametrize("name", sorted(ATTACK_PINS))
def test_attack_config_identity(name):
    """The attack config's identity_dict enters the attack run's identity."""
    cls = registry.load("attack", name)
    found = {world: hash_obj(cls.Config.for_world(world).identity_dict()) for world in CONCEPT}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny budget warns that it is below the paper's
        for label, overrides in (("tiny", ATTACK_TINY[name]), ("types", ATTACK_TYPES[name])):
            found[label] = hash_obj(cls.Config.for_world("sd").with_overrides(overrides).identity_dict())
    assert found == ATTACK_PINS[name]


@pytest.mark.parametrize("spec", sorted(SPEC_PINS))
def test_packaged_spec_identity(spec):
    """An audit run is named by its spec's identity_dict; the spec parser moves into audit/fields.py."""
    assert hash_obj(load_spec(packaged_spec(spec)).identity_dict()) == SPEC_PINS[spec]


def test_prompt_row_hash():
    """Names a stored prompt row; PromptRow and this helper move to records/hashing."""
    assert prompt_row_hash("a lamp", 3, 7.5) == "2fc7be488d879955839b0d94e69aad6fa6d2b224d930728481cb54e3ae7bd999"
    assert PromptRow("a lamp", 3, 7.5).row_hash == prompt_row_hash("a lamp", 3, 7.5)


def test_run_identity_with_every_input():
    """Names every stored run; it moves to hashing. tests/test_store.py pins it without version or inputs."""
    identity = run_identity(
        "attack", "ring-a-bell", {"seed": 0, "budget": {"population": 4}, "vocabulary": "all"},
        component_version="2", model_fingerprint="ab" * 32, prompt_set_sha="cd" * 32,
        inputs={"target": 7, "seeds": [1, 2]},
    )
    assert identity == "1c9d4b5f35a5cf070b2d4b8955e22bf84aff7b0e4974ba7e65722066ad700a03"


def test_sample_hash_of_a_plain_and_a_learned_token_row():
    """Names one generated image, reused by any later run; PromptRow and GeneratedImage move to records."""
    plain = sample_hash(PromptRow("a lamp", 3, 7.5), PIXELS, MODEL)
    learned = {"learned_token": {"sha256": "12" * 32, "token": "<c>"}}
    with_token = sample_hash(PromptRow("a <c> lamp", 3, 7.5, meta=learned), PIXELS, MODEL)
    assert plain == "e6299f46672c122b12b0e9a38035201f48ba870cd92135ecc2940ea78535596c"
    assert with_token == "0dd5f711f8ef8da48f9c18b36f7a8b145c1748458a26ba0c4ce8567c94324419"


def test_default_pixel_settings():
    """pixel_config enters every generation run's identity and sample hash; P5 edits GenerationSettings."""
    pixels = hash_obj(GenerationSettings().pixel_config())
    assert pixels == "278da629e8418eb4a12ef28ae40a1f7c561115e317158a85a0ff63d190098e4f"
