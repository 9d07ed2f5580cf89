"""Tokenizer and text-encoder helpers shared by attacks, erasers, guards and the sampler: prompt
tokenisation, the searchable vocabulary, prompt layout, text encoding from arbitrary token embeddings,
nearest-token projection and the decode/re-tokenise check.

Written against diffusers' CLIPTokenizer/CLIPTextModel; works with transformers 4.x (text_model.*) and
5.x (embeddings on the model itself).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    import torch


def tokenize(tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """Input ids [N, model_max_length], padded and truncated as the pipeline encodes a prompt."""
    return tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids


def token_count(tokenizer, prompt: str) -> int:
    """Tokens between [SoT] and the first [EoT] after truncation, so the first [EoT] sits at count + 1."""
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return len(ids) - 2


def text_root(text_encoder: Any) -> Any:
    """The module holding ``embeddings`` (CLIPTextModel.text_model in transformers 4, the model in 5)."""
    return getattr(text_encoder, "text_model", text_encoder)


def token_embedding(text_encoder: Any) -> Any:
    return text_root(text_encoder).embeddings.token_embedding


def special_ids(tokenizer: Any) -> set[int]:
    found = set(getattr(tokenizer, "all_special_ids", []) or [])
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        value = getattr(tokenizer, attr, None)
        if value is not None:
            found.add(int(value))
    return found


def token_word(tokenizer: Any, token_id: int) -> str:
    return tokenizer.convert_ids_to_tokens(int(token_id)).replace("</w>", "").strip().lower()


def searchable_ids(
    tokenizer: Any, text_encoder: Any, exclude_words: Iterable[str] = (), corpus: Iterable[str] | None = None
) -> list[int]:
    """Token ids an attack may choose: the tokenizer's vocabulary (or, given a ``corpus``, the tokens
    its texts tokenise to) minus special tokens and tokens that spell one of ``exclude_words``,
    limited to rows the text encoder has embeddings for."""
    n_rows = token_embedding(text_encoder).weight.shape[0]
    skip = special_ids(tokenizer)
    banned = {w.strip().lower() for phrase in exclude_words for w in phrase.split() if w.strip()}
    if corpus is None:
        candidates = set(tokenizer.get_vocab().values())
    else:
        candidates = {i for text in corpus for i in tokenizer(text, truncation=False).input_ids}
    ids = []
    for token_id in sorted(candidates):
        if token_id in skip or token_id >= n_rows:
            continue
        if banned and token_word(tokenizer, token_id) in banned:
            continue
        ids.append(token_id)
    return ids


def content_ids(tokenizer: Any, text: str) -> list[int]:
    """A prompt's token ids without start/end/padding, truncated to what fits between them."""
    ids = tokenizer(text, truncation=True, max_length=tokenizer.model_max_length).input_ids
    return [i for i in ids if i not in (tokenizer.bos_token_id, tokenizer.eos_token_id)][: max_content(tokenizer)]


def max_content(tokenizer: Any) -> int:
    return int(tokenizer.model_max_length) - 2


def full_ids(tokenizer: Any, content: Sequence[int]) -> list[int]:
    """start + content + end, padded with the tokenizer's pad token as the pipeline pads a prompt."""
    length = int(tokenizer.model_max_length)
    ids = [tokenizer.bos_token_id, *list(content)[: length - 2], tokenizer.eos_token_id]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return ids + [pad] * (length - len(ids))


def decode(tokenizer: Any, content: Sequence[int]) -> str:
    return tokenizer.decode([int(i) for i in content], skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()


@dataclass
class Roundtrip:
    text: str
    matches: bool
    mismatch: dict[str, Any] | None

    def as_meta(self) -> dict[str, Any]:
        return {"retokenizes": self.matches, "retokenize_mismatch": self.mismatch}


def roundtrip(tokenizer: Any, content: Sequence[int]) -> Roundtrip:
    """Decode optimised ids to text and check the text tokenises back to the same ids.

    BPE decoding is lossy (a sub-word token at a word end merges differently, whitespace tokens vanish),
    so the prompt that is later generated from can differ from the optimised one; we record how.
    """
    content = [int(i) for i in content]
    text = decode(tokenizer, content)
    again = content_ids(tokenizer, text)
    if again == content:
        return Roundtrip(text, True, None)
    first = next((i for i, (a, b) in enumerate(zip(content, again)) if a != b), min(len(content), len(again)))
    return Roundtrip(
        text,
        False,
        {
            "first_mismatch": first,
            "n_optimised": len(content),
            "n_retokenized": len(again),
            "retokenized_ids": again,
        },
    )


@contextlib.contextmanager
def substituted_token_embeddings(text_encoder: Any, embeds: Any) -> Iterator[None]:
    """Within the block, the text encoder's token-embedding lookup returns ``embeds`` (batch, 77, d).

    Hooking the lookup (rather than re-implementing the encoder) keeps the model's own positional
    embeddings, causal mask and layer norm, whatever the transformers version.
    """
    handle = token_embedding(text_encoder).register_forward_hook(lambda module, inputs, output: embeds.to(output.dtype))
    try:
        yield
    finally:
        handle.remove()


def encode_embeds(text_encoder: Any, ids: Any, embeds: Any) -> Any:
    """Hidden states (the full sequence output the UNet attends to) for token embeddings ``embeds``;
    ``ids`` (same batch/length) only locate the end token for the pooled output, which is unused."""
    with substituted_token_embeddings(text_encoder, embeds):
        return text_encoder(ids)[0]


def encode_ids(text_encoder: Any, ids: Any) -> Any:
    return text_encoder(ids)[0]


def nearest_tokens(embeds: Any, vocab_unit: Any, vocab_ids: Any) -> Any:
    """Nearest vocabulary token of each row of ``embeds`` by cosine similarity (P4D's projection);
    ``vocab_unit`` holds the vocabulary's embeddings normalised to unit length."""
    import torch.nn.functional as F  # deferred: importing this module must not load torch

    return vocab_ids[(F.normalize(embeds, dim=-1) @ vocab_unit.T).argmax(dim=-1)]
