"""Fine-tuning resurgence beyond SD: the in-house LoRA (models/lora.py) computes what it merges into, and
leaves a denoiser as it found it; on SDXL, SD3 and FLUX the attack trains LoRA adapters by default, its
checkpoints load with the family's diffusers pipeline and differ from the target only in the adapted
layers, the attacked pipeline leaves as it came, a new config field at its default keeps every stored
identity, and through the API each FLUX checkpoint is scored."""

from __future__ import annotations

import json

import pytest
import torch

from trce_audit.data.concepts import Concept
from trce_audit.errors import ConfigError
from trce_audit.generation import GenerationSettings
from trce_audit.hashing import hash_obj
from trce_audit.models import lora
from trce_audit.models.families import PIPELINE_CLASS, load_family
from trce_audit.models.tiny import build_pipeline, save_pipeline
from trce_audit.store import PromptRow

CONCEPT = Concept("cat", pairs=(("cat", "dog"), ("a red cat", "a red dog")))
SEEDS = [PromptRow("a photo of a cat", 7, 6.0), PromptRow("a cat at the beach", 11, 7.5)]
TINY = {"steps": 3, "checkpoints": 2, "n_images": 3, "gradient_accumulation": 1, "target_steps": 1,
        "captions": "pairs", "lora_lr": 1e-3, "lr": 1e-3}
FAMILIES = ("sdxl", "sd3", "flux")
pytestmark = pytest.mark.filterwarnings("ignore::trce_audit.attacks.base.BelowPaperBudgetWarning")


def _linear(seed: int = 0, bias: bool = True) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(12, 10, bias=bias)


def _tower() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.ModuleDict({"attn": torch.nn.ModuleDict({"to_k": torch.nn.Linear(6, 6), "to_v": torch.nn.Linear(6, 6)})}),
                               torch.nn.ModuleDict({"attn": torch.nn.ModuleDict({"to_k": torch.nn.Linear(6, 6), "norm": torch.nn.LayerNorm(6)})}))


def _trained(wrapper: lora.LoRALinear, seed: int = 1) -> lora.LoRALinear:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        wrapper.up.weight.copy_(torch.randn(wrapper.up.weight.shape, generator=generator))
    return wrapper


def test_a_fresh_adapter_changes_nothing_and_is_drawn_as_peft_draws_it():
    base = _linear()
    wrapper = lora.LoRALinear(base, rank=4, alpha=8, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 12)
    assert torch.equal(wrapper(x), base(x))  # up starts at zero
    assert wrapper.scale == 2.0 and not base.weight.requires_grad and wrapper.down.weight.requires_grad
    assert wrapper.down.weight.shape == (4, 12) and wrapper.up.weight.shape == (10, 4)
    # peft's init_lora_weights="gaussian": down ~ N(0, 1/rank), drawn here from the generator on the CPU
    again = lora.LoRALinear(_linear(), rank=4, alpha=8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.down.weight, wrapper.down.weight)
    assert abs(float(wrapper.down.weight.detach().std()) - 0.25) < 0.1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_merging_computes_what_the_wrapper_computes(dtype):
    base = _linear().to(dtype)
    wrapper = _trained(lora.LoRALinear(base, rank=3, alpha=6, generator=torch.Generator().manual_seed(0)))
    x = torch.randn(7, 12).to(dtype)
    wrapped = wrapper(x).float()
    merged = wrapper.merged_linear()
    assert merged.weight.dtype == dtype and not merged.weight.requires_grad
    tolerance = (1e-5 if dtype == torch.float32 else 2e-2) * float(wrapped.detach().abs().max())  # scaled to the output
    assert torch.allclose(merged(x).float(), wrapped, atol=tolerance, rtol=0)
    expected = base.weight.float() + 2.0 * wrapper.up.weight @ wrapper.down.weight
    assert torch.allclose(merged.weight.float(), expected, atol=1e-6 if dtype == torch.float32 else 5e-2)


def test_target_names_follow_peft_suffix_matching():
    tower = _tower()
    assert lora.target_names(tower, ["attn.to_k"]) == ["0.attn.to_k", "1.attn.to_k"]
    assert lora.target_names(tower, ["to_v", " to_k "]) == ["0.attn.to_k", "0.attn.to_v", "1.attn.to_k"]
    assert lora.target_names(tower, ["0.attn.to_v"]) == ["0.attn.to_v"]
    with pytest.raises(ConfigError, match="name no module"):
        lora.target_names(tower, ["to_q"])
    with pytest.raises(ConfigError, match="is a LayerNorm, not a linear layer"):
        lora.target_names(tower, ["attn.norm"])


def test_attach_merge_detach_and_the_merged_view():
    tower = _tower()
    before = {k: v.clone() for k, v in tower.state_dict().items()}
    names = lora.target_names(tower, ["to_k"])
    wrappers = lora.attach(tower, names, rank=2, alpha=2, generator=torch.Generator().manual_seed(0))
    assert set(lora.adapters(tower)) == set(names) == set(wrappers)
    assert len(lora.parameters(tower)) == 4
    for wrapper in wrappers.values():
        _trained(wrapper)
    x = torch.randn(3, 6)
    wrapped = tower[1]["attn"]["to_k"](tower[0]["attn"]["to_k"](x))
    with lora.merged(tower):  # a plain model with the base's keys, holding the merged weights
        assert not lora.adapters(tower) and set(tower.state_dict()) == set(before)
        inside = {k: v.clone() for k, v in tower.state_dict().items()}
        assert torch.allclose(tower[1]["attn"]["to_k"](tower[0]["attn"]["to_k"](x)), wrapped, atol=1e-5)
    assert set(lora.adapters(tower)) == set(names)  # the adapters are back
    changed = {k for k in before if not torch.equal(before[k], inside[k])}
    assert changed == {"0.attn.to_k.weight", "1.attn.to_k.weight"}  # biases and other layers untouched
    with pytest.raises(ConfigError, match="already carries a LoRA adapter"):
        lora.attach(tower, names[:1], rank=2)
    state = lora.adapter_state(tower)
    assert sorted(state) == sorted(f"{n}.lora_{ab}.weight" for n in names for ab in "AB")
    assert lora.detach(tower) == names  # restore: the base weights as they were
    assert not lora.adapters(tower)
    assert all(torch.equal(v, before[k]) for k, v in tower.state_dict().items())
    rng = torch.get_rng_state()
    lora.load_adapter_state(tower, state, alpha=2)  # an adapter file read back, then baked in
    assert torch.equal(torch.get_rng_state(), rng)  # loading draws nothing from the global generator
    assert lora.merge(tower) == names and not lora.adapters(tower)
    assert all(torch.allclose(v, inside[k], atol=1e-6) for k, v in tower.state_dict().items())


def test_new_config_fields_at_their_defaults_keep_every_identity():
    from trce_audit.attacks.finetune import FinetuneConfig

    config = FinetuneConfig()
    identity = config.identity_dict()
    assert not set(identity) & {"lora_rank", "lora_alpha", "lora_targets", "lora_lr", "embedded_guidance", "gradient_checkpointing"}
    assert set(identity) == set(config.as_dict()) - set(FinetuneConfig.added_fields) - {"gradient_checkpointing"}
    tuned = config.with_overrides({"lora_rank": "8", "lora_targets": "to_k,to_v", "gradient_checkpointing": "true"})
    assert tuned.identity_dict()["lora_rank"] == 8 and tuned.identity_dict()["lora_targets"] == ("to_k", "to_v")
    assert hash_obj(config.with_overrides({"gradient_checkpointing": "true"}).identity_dict()) == hash_obj(identity)  # memory only
    assert config.rank_for("sd") == 0 and config.rank_for("flux") == 16 and config.rank_for("sdxl") == 16
    assert config.with_overrides({"lora_rank": "0"}).rank_for("flux") == 0  # full fine-tuning, asked for
    assert config.with_overrides({"lora_rank": "4"}).rank_for("sd") == 4
    with pytest.raises(ConfigError, match="lora_rank must be"):
        config.with_overrides({"lora_rank": "-1"}).rank_for("sd")


def test_a_checkpoint_names_the_same_weights_whatever_was_encoded_last(tmp_path):
    """save_erased_pipeline clears the saved padding/truncation of every tokenizer (FLUX's T5 is its second)."""
    from trce_audit.hashing import hash_tree
    from trce_audit.models.folder import save_erased_pipeline

    pipe = build_pipeline("flux", seed=0)
    family = load_family("flux")
    hashes = []
    for length in (16, 24):
        with torch.no_grad():
            family.encode(pipe, ["a cat"], "cpu", torch.float32, length)
        hashes.append(hash_tree(save_erased_pipeline(pipe, tmp_path / str(length), None, {})))
    assert hashes[0] == hashes[1]


def _components(pipe) -> dict[str, dict[str, torch.Tensor]]:
    return {name: {k: v.detach().clone() for k, v in part.state_dict().items()}
            for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}


@pytest.fixture(scope="module", params=FAMILIES)
def tuned(request, tmp_path_factory):
    """(family, target before, target after, result, guidance seen by the family's training call)."""
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.finetune import FinetuneResurgence
    from trce_audit.models.families.base import Family

    torch.set_num_threads(1)
    family = request.param
    target, original = build_pipeline(family, seed=0), build_pipeline(family, seed=1)
    before = _components(target)
    seen: list[float] = []
    real = Family.training_prediction

    def spy(self, pipe, x_t, t, cond, guidance=None):
        seen.extend(guidance.tolist())
        return real(self, pipe, x_t, t, cond, guidance)

    context = AttackContext(artefact_dir=tmp_path_factory.mktemp(f"finetuned-{family}"),
                            generation=GenerationSettings(steps=2, height=32, width=32))
    attack = FinetuneResurgence(FinetuneResurgence.Config().with_overrides(TINY))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Family, "training_prediction", spy)
        result = attack.run(target, CONCEPT, SEEDS, original_pipe=original, context=context)
    return family, before, target, result, seen


def test_lora_checkpoints_load_with_the_family_pipeline_and_differ_only_where_adapted(tuned):
    import diffusers

    family, before, target, result, _ = tuned
    entry = result.rows[0].meta["finetuned"]
    assert [p["steps"] for p in entry["checkpoints"]] == [2, 3]
    stats = result.stats["lora"]
    assert stats["rank"] == 16 and stats["alpha"] == 16.0 and stats["targets"] == list(lora.SCRIPT_TARGETS[family])
    denoiser = load_family(family).denoiser
    adapted = set(lora.target_names(getattr(target, denoiser), lora.SCRIPT_TARGETS[family]))
    assert stats["layers"] == len(adapted)
    cls = getattr(diffusers, PIPELINE_CLASS[family])
    previous = None
    for point in entry["checkpoints"]:
        marker = json.loads(open(f"{point['path']}/trce_audit.json").read())
        assert marker["finetuned"]["steps"] == point["steps"] and marker["finetuned"]["lora"]["rank"] == 16
        loaded = cls.from_pretrained(point["path"])
        weights = _components(loaded)
        assert set(weights) == set(before)
        for name, state in weights.items():
            assert set(state) == set(before[name])  # plain diffusers layout: the adapters are merged
            changed = {k for k in state if not torch.equal(state[k], before[name][k])}
            if name != denoiser:
                assert not changed, f"{name} changed"
                continue
            assert changed and all(k.rsplit(".", 1)[0] in adapted for k in changed), sorted(changed)[:5]
            assert all(k.endswith(".weight") for k in changed)  # the update is W += scale * up @ down
            if previous is not None:
                assert any(not torch.equal(state[k], previous[k]) for k in changed)
            previous = state


def test_the_attacked_pipeline_leaves_as_it_came(tuned):
    family, before, target, _, _ = tuned
    denoiser = getattr(target, load_family(family).denoiser)
    assert not lora.adapters(denoiser) and not denoiser.is_gradient_checkpointing and not denoiser.training
    after = _components(target)
    assert all(torch.equal(after[name][k], v) for name, state in before.items() for k, v in state.items())
    assert not any(p.requires_grad for part in target.components.values() if isinstance(part, torch.nn.Module) for p in part.parameters())


def test_flux_dev_trains_at_the_scripts_embedded_guidance(tuned):
    family, _, target, _, seen = tuned
    assert seen and set(seen) == {3.5}  # ignored by models without a guidance embedding
    if family == "flux":
        assert target.transformer.config.guidance_embeds


def test_full_fine_tuning_on_another_family_when_asked(tmp_path):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.finetune import FinetuneResurgence

    target = build_pipeline("sd3", seed=0)
    before = _components(target)["transformer"]
    attack = FinetuneResurgence(FinetuneResurgence.Config().with_overrides({**TINY, "steps": 1, "checkpoints": 1, "lora_rank": 0}))
    result = attack.run(target, CONCEPT, SEEDS[:1], context=AttackContext(artefact_dir=tmp_path, generation=GenerationSettings(steps=2, height=32, width=32)))
    assert "lora" not in result.stats
    import diffusers

    saved = diffusers.StableDiffusion3Pipeline.from_pretrained(result.rows[0].meta["finetuned"]["checkpoints"][0]["path"]).transformer.state_dict()
    changed = {k.rsplit(".", 1)[0] for k in saved if not torch.equal(saved[k], before[k])}
    assert changed - set(lora.target_names(target.transformer, lora.SCRIPT_TARGETS["sd3"]))  # beyond the LoRA layers
    assert all(torch.equal(v, before[k]) for k, v in target.transformer.state_dict().items())


def test_lora_on_sd_when_asked(pipes, tmp_path):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.finetune import FinetuneResurgence

    before = {k: v.clone() for k, v in pipes[0].unet.state_dict().items()}
    attack = FinetuneResurgence(FinetuneResurgence.Config().with_overrides({**TINY, "steps": 1, "checkpoints": 1, "lora_rank": 4}))
    result = attack.run(pipes[0], CONCEPT, SEEDS[:1], original_pipe=pipes[1], context=AttackContext(artefact_dir=tmp_path))
    assert result.stats["lora"]["rank"] == 4 and result.stats["lora"]["targets"] == ["to_k", "to_q", "to_v", "to_out.0"]
    from diffusers import StableDiffusionPipeline

    saved = StableDiffusionPipeline.from_pretrained(result.rows[0].meta["finetuned"]["checkpoints"][0]["path"], safety_checker=None).unet.state_dict()
    changed = {k for k in saved if not torch.equal(saved[k], before[k])}
    assert changed and all(k.rsplit(".", 2)[-2] in ("to_k", "to_q", "to_v", "0") and ".attn" in k for k in changed)
    assert all(torch.equal(v, before[k]) for k, v in pipes[0].unet.state_dict().items())


def test_unknown_lora_targets_fail_in_one_line(tmp_path):
    from trce_audit.attacks.base import AttackContext
    from trce_audit.attacks.finetune import FinetuneResurgence

    target = build_pipeline("flux", seed=0)
    before = _components(target)
    attack = FinetuneResurgence(FinetuneResurgence.Config().with_overrides({**TINY, "lora_targets": "to_nothing"}))
    with pytest.raises(ConfigError, match="name no module of this FluxTransformer2DModel"):
        attack.run(target, CONCEPT, SEEDS[:1], context=AttackContext(artefact_dir=tmp_path, generation=GenerationSettings(steps=2, height=32, width=32)))
    after = _components(target)
    assert all(torch.equal(after[name][k], v) for name, state in before.items() for k, v in state.items())


@pytest.mark.slow
def test_api_scores_every_flux_checkpoint(shared_data, store, workspace, tmp_path):
    """`trce-audit attack finetune-resurgence --model <tiny flux folder>` through the API: the curve has
    step 0 and a point per checkpoint, each checkpoint folder evaluated as a FLUX model."""
    from trce_audit import api

    folder = str(save_pipeline(tmp_path / "flux-tiny", shape="flux"))
    budget = {"steps": 2, "checkpoints": 2, "n_images": 2, "gradient_accumulation": 1, "target_steps": 1}
    summary = api.attack(store, workspace, name="finetune-resurgence", model=folder, concept="nudity", prompts="mma-diffusion",
                         limit=2, budget=budget, settings={"steps": 2, "height": 32, "width": 32, "device": "cpu"})
    assert summary["tier"] == "weights" and summary["stats"]["lora"]["rank"] == 16
    curve = summary["curve"]
    assert [p["steps"] for p in curve] == [0, 1, 2] and curve[0]["model"] == folder
    assert all(p["n"] == 2 for p in curve) and curve[-1]["asr"] == summary["asr_after"]
    tuned = [a for a in store.list_artefacts() if a.kind == "attack-model"]
    assert [a.meta["steps"] for a in tuned] == [1, 2]
    assert all(json.loads(open(f"{a.path}/model_index.json").read())["_class_name"] == "FluxPipeline" for a in tuned)
