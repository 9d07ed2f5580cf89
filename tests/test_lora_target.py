"""A published erased LoRA as an audit target (``--model BASE+lora:PATH``): a diffusers-layout LoRA file
made by a few steps of the project's own LoRA fine-tune on the tiny FLUX shape is folded into its base
when loaded, its sha256 is part of the model's identity, and a file trce-audit cannot read is one line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from trce_audit.errors import ModelError
from trce_audit.models import lora
from trce_audit.models.families import load_family
from trce_audit.models.lora_files import read_lora_file, write_lora_file
from trce_audit.models.resolve import load_pipeline, resolve_model
from trce_audit.models.tiny import build_pipeline, save_pipeline

TARGETS = ("attn.to_k", "attn.to_v", "attn.add_k_proj", "attn.add_v_proj")


def trained_lora(pipe, steps: int, seed: int) -> dict[str, torch.Tensor]:
    """A rank-4 LoRA on the FLUX transformer's attention, trained ``steps`` SGD steps on the family's
    flow-matching loss (the adapters and loss the fine-tuning attack uses); its peft-style state."""
    family = load_family("flux")
    generator = torch.Generator().manual_seed(seed)
    lora.attach(pipe.transformer, lora.target_names(pipe.transformer, TARGETS), rank=4, alpha=8, generator=generator)
    optimizer = torch.optim.SGD(lora.parameters(pipe.transformer), lr=0.5)
    with torch.no_grad():
        cond = family.encode(pipe, ["a red cross on a wall"], "cpu", torch.float32, 16)
    x0 = torch.randn(family.latent_shape(pipe, 1, 32, 32), generator=generator)
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.tensor([500])
    for _ in range(steps):
        optimizer.zero_grad()
        pred = family.training_prediction(pipe, family.noised(pipe, x0, noise, t), t, cond)
        torch.nn.functional.mse_loss(pred, family.training_target(pipe, x0, noise, t)).backward()
        optimizer.step()
    state = lora.adapter_state(pipe.transformer)
    lora.detach(pipe.transformer)
    return state


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    return save_pipeline(tmp_path_factory.mktemp("flux") / "base", shape="flux")


def test_a_lora_file_is_folded_into_its_base(base_folder, tmp_path):
    state = trained_lora(build_pipeline("flux", seed=0), steps=3, seed=1)
    path = tmp_path / "erased.safetensors"
    write_lora_file(path, {"transformer": state}, {"transformer": 8.0})
    states, alphas = read_lora_file(path, "transformer")
    assert set(states["transformer"]) == set(state) and alphas == {"transformer": 8.0}

    base = load_pipeline(resolve_model(str(base_folder)))
    ref = resolve_model(f"{base_folder}+lora:{path}")
    assert ref.path == base_folder.resolve() and ref.loras and ref.fingerprint != resolve_model(str(base_folder)).fingerprint
    folded = load_pipeline(ref)
    before, after = base.transformer.state_dict(), folded.transformer.state_dict()
    adapted = {key[: -len(".lora_A.weight")] for key in state if key.endswith(".lora_A.weight")}
    for key in before:
        layer = key.rsplit(".", 1)[0]
        if layer in adapted and key.endswith(".weight"):
            delta = (8.0 / 4) * state[f"{layer}.lora_B.weight"] @ state[f"{layer}.lora_A.weight"]
            # one float32 addition per entry: rounding of |W| + |ΔW|
            torch.testing.assert_close(after[key], before[key] + delta, rtol=0, atol=4 * (before[key].abs().max() + delta.abs().max()) * 2**-23)
        else:
            assert torch.equal(after[key], before[key]), key
    assert any(not torch.equal(after[f"{layer}.weight"], before[f"{layer}.weight"]) for layer in adapted)


def test_the_identity_follows_the_loras_bytes(base_folder, tmp_path):
    path = tmp_path / "erased.safetensors"
    write_lora_file(path, {"transformer": trained_lora(build_pipeline("flux", seed=0), steps=1, seed=1)}, {})
    first = resolve_model(f"{base_folder}+lora:{path}").fingerprint
    assert resolve_model(f"{base_folder}+lora:{path}").fingerprint == first  # same bytes, same identity
    write_lora_file(path, {"transformer": trained_lora(build_pipeline("flux", seed=0), steps=2, seed=1)}, {})
    assert resolve_model(f"{base_folder}+lora:{path}").fingerprint != first


def test_a_lora_target_generates_through_the_cli(base_folder, tmp_path, cli):
    path = tmp_path / "erased.safetensors"
    write_lora_file(path, {"transformer": trained_lora(build_pipeline("flux", seed=0), steps=2, seed=1)}, {})
    prompts = tmp_path / "prompts.csv"
    prompts.write_text("prompt,evaluation_seed,evaluation_guidance\na red cross,1,3.5\na blue circle,2,3.5\n")
    args = ["--prompts", str(prompts), "--steps", "2", "--height", "32", "--width", "32", "--json"]
    code, out, err = cli("generate", "--model", f"{base_folder}+lora:{path}", *args)
    assert code == 0, err
    lora_run = json.loads(out)
    code, out, err = cli("generate", "--model", str(base_folder), *args)
    assert code == 0, err
    assert json.loads(out)["run_id"] != lora_run["run_id"]  # another model, another run


@pytest.mark.parametrize("make, problem", [
    (lambda p: None, "does not exist"),
    (lambda p: p.with_suffix(".bin").write_bytes(b"x"), "not a .safetensors file"),
    (lambda p: save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(2, 2)}, str(p)), "diffusers' LoRA layout"),
    (lambda p: p.write_bytes(b"not safetensors at all"), "cannot read LoRA file"),
])
def test_a_lora_file_trce_audit_cannot_use_is_one_line(base_folder, tmp_path, make, problem):
    path = tmp_path / "published.safetensors"
    make(path)
    target = path.with_suffix(".bin") if "pickle" in problem or ".safetensors" in problem else path
    with pytest.raises(ModelError) as exc:
        load_pipeline(resolve_model(f"{base_folder}+lora:{target}"))
    assert problem in str(exc.value) and "\n" not in str(exc.value)
