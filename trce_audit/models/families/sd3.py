"""SD3 / SD3.5: an MMDiT conditioned on two CLIP encoders and T5 (one joint sequence) and the CLIPs'
pooled embeddings; flow matching (the transformer predicts a velocity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Conditioning, Family, TextInput
from .sd import padded_ids

T5_LENGTH = 256  # the SD3 pipeline's default max_sequence_length


def joint_projections(denoiser) -> list[str]:
    """The MMDiT's text-side modules: the caption embedder, each joint block's text K/V projections
    and the pooled-text projection of the time embedding."""
    names = [name for name, _ in denoiser.named_modules()]
    picked = [n for n in names if n == "context_embedder" or n.endswith(("attn.add_k_proj", "attn.add_v_proj"))]
    return sorted(picked + [n for n in names if n == "time_text_embed.text_embedder.linear_1"])


def flow_shift(image_seq_len: int, config, max_shift_default: float) -> float:
    """The resolution-dependent shift ``mu`` of diffusers' flow-matching pipelines (linear in tokens)."""
    base_len, max_len = config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096)
    base_shift, max_shift = config.get("base_shift", 0.5), config.get("max_shift", max_shift_default)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return image_seq_len * slope + base_shift - slope * base_len


class FlowMatching(Family):
    """Rectified-flow training as diffusers' SD3 and FLUX training scripts run it: x_t = (1 - s) x0 + s eps
    with s = (t + 1) / T (the flow-matching scheduler's training sigmas, shifted by its static ``shift``
    unless it shifts by resolution), the model at timestep s * T, learning the velocity eps - x0."""

    flow_matching = True

    def sigma(self, pipe, t, like):
        config = pipe.scheduler.config
        s = (t.to(like.device, torch.float32) + 1) / self.train_timesteps(pipe)
        shift = float(config.get("shift", 1.0))
        if not config.get("use_dynamic_shifting", False) and shift != 1.0:
            s = shift * s / (1 + (shift - 1) * s)
        return s.to(like.dtype)

    def encoded_latents(self, pipe, sample):
        vae = pipe.vae
        return (sample - vae.config.shift_factor) * vae.config.scaling_factor

    def noised(self, pipe, x0, noise, t):
        s = self.sigma(pipe, t, x0).view(-1, *[1] * (x0.dim() - 1))
        return (1 - s) * x0 + s * noise

    def training_target(self, pipe, x0, noise, t):
        return noise - x0

    def model_timestep(self, pipe, t):
        return self.sigma(pipe, t, torch.zeros((), dtype=torch.float32)) * self.train_timesteps(pipe)


class StableDiffusion3(FlowMatching):
    name = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    denoiser = "transformer"

    def text_projections(self, denoiser) -> list[str]:
        return joint_projections(denoiser)

    def encode(self, pipe, texts, device, dtype, max_sequence_length=None) -> Conditioning:
        states, pooled = [], []
        for tokenizer, encoder in ((pipe.tokenizer, pipe.text_encoder), (pipe.tokenizer_2, pipe.text_encoder_2)):
            out = encoder(padded_ids(tokenizer, texts, device, pipe.tokenizer_max_length), output_hidden_states=True)
            pooled.append(out[0])
            states.append(out.hidden_states[-2])
        clip = torch.cat(states, dim=-1)
        t5 = self.t5_states(pipe, texts, device, max_sequence_length or T5_LENGTH, clip.dtype)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return Conditioning(torch.cat([clip, t5], dim=-2).to(dtype), torch.cat(pooled, dim=-1).to(dtype))

    def text_inputs(self, pipe, max_sequence_length=None) -> list[TextInput]:
        clip = int(pipe.tokenizer_max_length)
        found = [TextInput("clip_l", "tokenizer", pipe.tokenizer, pipe.text_encoder, clip),
                 TextInput("clip_g", "tokenizer_2", pipe.tokenizer_2, pipe.text_encoder_2, clip)]
        if pipe.text_encoder_3 is not None:
            found.append(TextInput("t5", "tokenizer_3", pipe.tokenizer_3, pipe.text_encoder_3, max_sequence_length or T5_LENGTH))
        return found

    def encode_ids(self, pipe, ids, dtype, max_sequence_length=None) -> Conditioning:
        states, pooled = [], []
        for key, encoder in (("clip_l", pipe.text_encoder), ("clip_g", pipe.text_encoder_2)):
            out = encoder(ids[key], output_hidden_states=True)
            pooled.append(out[0])
            states.append(out.hidden_states[-2])
        clip = torch.cat(states, dim=-1)
        if pipe.text_encoder_3 is None:  # as t5_states: zeros in T5's place
            width = pipe.transformer.config.joint_attention_dim
            t5 = torch.zeros((clip.shape[0], max_sequence_length or T5_LENGTH, width), device=clip.device, dtype=clip.dtype)
        else:
            t5 = pipe.text_encoder_3(ids["t5"])[0].to(pipe.text_encoder_3.dtype)
        clip = F.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
        return Conditioning(torch.cat([clip, t5], dim=-2).to(dtype), torch.cat(pooled, dim=-1).to(dtype))

    def t5_states(self, pipe, texts, device, length: int, dtype):
        if pipe.text_encoder_3 is None:  # SD3 runs without T5; the pipeline feeds zeros in its place
            width = pipe.transformer.config.joint_attention_dim
            return torch.zeros((len(texts), length, width), device=device, dtype=dtype)
        ids = padded_ids(pipe.tokenizer_3, texts, device, length)
        return pipe.text_encoder_3(ids)[0].to(pipe.text_encoder_3.dtype)

    def set_timesteps(self, pipe, scheduler, steps, shape, device) -> None:
        if not scheduler.config.get("use_dynamic_shifting", False):
            scheduler.set_timesteps(steps, device=device)
            return
        patch = pipe.transformer.config.patch_size
        seq_len = (shape[-2] // patch) * (shape[-1] // patch)
        scheduler.set_timesteps(steps, device=device, mu=flow_shift(seq_len, scheduler.config, 1.16))

    def call_denoiser(self, denoiser, model_input, t, cond, guidance=None):
        timestep = t.expand(model_input.shape[0])
        return denoiser(
            hidden_states=model_input, timestep=timestep, encoder_hidden_states=cond.states,
            pooled_projections=cond.pooled, return_dict=False,
        )[0]

    def vae_latents(self, pipe, latents, height, width):
        vae = pipe.vae
        return (latents.to(vae.dtype) / vae.config.scaling_factor) + vae.config.shift_factor
