"""pocket-flux: the pocket world's FLUX.1-architecture model, as configs and where it would live.

Plain data, like ``models.py`` (the modules are built in ``flux_builders.py``). What it shares with the
pocket SD model (``MODEL_DIR``): the CLIP tokenizer and vocabulary (for both tokenizers), the trained CLIP
text encoder (frozen; FLUX reads only its pooled output) and the VAE (its latents shifted and scaled as
FLUX's VAE config does it). What is its own: a tiny T5 encoder and the transformer.
"""

from __future__ import annotations

from .models import LATENT_CHANNELS, TEXT_HIDDEN, WEIGHTS_DIR
from .tokenizer import VOCAB_SIZE

FLUX_MODEL_DIR = WEIGHTS_DIR / "pocket-flux"  # not shipped yet: train_flux.py writes such a folder
IMAGE_SIZE = 32
# T5 prompt length the model is trained at (FLUX.1-dev pads to 512, schnell to 256). FLUX attends to every
# padding token (no mask), so the model must be sampled at this length. The longest training caption is 42
# CLIP tokens with start and end, pocket-general's longest prompt 39.
T5_LENGTH = 48
T5_HIDDEN = 64
EOS_ID = 49407  # the CLIP vocabulary's <|endoftext|>: end and padding token of both tokenizers

# google/t5-v1_1's encoder layout (gated-GELU feed-forward, relative position buckets, untied embeddings),
# scaled down; over the CLIP vocabulary, so its embedding table (49408 x 64) is most of its size.
# No dropout: the encoder is pre-trained here and then frozen.
T5_CONFIG = dict(
    vocab_size=VOCAB_SIZE, d_model=T5_HIDDEN, d_ff=2 * T5_HIDDEN, d_kv=16, num_heads=4, num_layers=4,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    tie_word_embeddings=False, dropout_rate=0.0, pad_token_id=EOS_ID, eos_token_id=EOS_ID,
    decoder_start_token_id=EOS_ID,
)

# FLUX.1's transformer (joint then single blocks, 1:2 as 19:38, RoPE over three position axes, guidance
# embedding as FLUX.1-dev), scaled down: width 128 = 4 heads x 32; the RoPE axes split the head width in
# FLUX's proportions (16, 56, 56 of 128). The pocket VAE's 4 latent channels, packed 2x2, are 16 inputs.
TRANSFORMER_CONFIG = dict(
    patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=2, num_single_layers=4, attention_head_dim=32,
    num_attention_heads=4, joint_attention_dim=T5_HIDDEN, pooled_projection_dim=TEXT_HIDDEN,
    guidance_embeds=True, axes_dims_rope=(4, 14, 14),
)

# FLUX.1-dev's scheduler_config.json: the shift follows the packed image's token count (mu = 0.5 at 256
# tokens, 1.15 at 4096; pocket images have 16 tokens, mu extrapolates to 0.46, a shift of exp(mu) = 1.58).
# With dynamic shifting the training sigmas are unshifted (families/sd3.py FlowMatching.sigma), as in
# diffusers' FLUX training scripts; ``shift`` is then unused.
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
    base_image_seq_len=256, max_image_seq_len=4096,
)

# Guidance is embedded (FLUX.1-dev): the base model is distilled to take the guidance scale as an input
# over this range, which holds the prompt sets' 7.5. The FLUX family never runs an unconditional pass.
GUIDANCE_RANGE = (1.0, 8.0)
STORED_BYTES_LIMIT = 30 * 10**6  # the budget for the folder on disk
