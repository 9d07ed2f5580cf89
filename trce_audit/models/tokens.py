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


def input_lookup(text_encoder: Any) -> Any:
    """The embedding module a text encoder's forward looks its input ids up in: CLIP's token embedding,
    T5's ``encoder.embed_tokens`` (in transformers 5 a module of its own, tied to ``shared`` by weight,
    so a hook on ``get_input_embeddings()`` would never fire)."""
    embeddings = getattr(text_root(text_encoder), "embeddings", None)
    if embeddings is not None and hasattr(embeddings, "token_embedding"):
        return embeddings.token_embedding
    stack = getattr(text_encoder, "encoder", None)
    if stack is not None and getattr(stack, "embed_tokens", None) is not None:
        return stack.embed_tokens
    return text_encoder.get_input_embeddings()


@contextlib.contextmanager
def replaced_lookups(replacements: Sequence[tuple[Any, Any]]) -> Iterator[None]:
    """Within the block, each (text encoder, replace) pair's input-embedding lookup returns
    ``replace(looked_up)``: the encoder's own lookup, positional embeddings, masks and layers, whatever
    the architecture, with chosen positions overridden (gradients flow into what ``replace`` inserts)."""
    handles = []
    try:
        for encoder, replace in replacements:
            handles.append(input_lookup(encoder).register_forward_hook(lambda module, inputs, output, replace=replace: replace(output)))
        yield
    finally:
        for handle in handles:
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


# Any tokenizer, CLIP or T5, at a pipeline's own sequence length: the white-box attacks on SDXL, SD3
# and FLUX (attacks/searched_text.py) search the vocabulary of whichever encoder feeds the image its
# text sequence. T5 has no start token and the pipelines pad it to their own length, not to the
# tokenizer's ``model_max_length``.
def capacity(tokenizer: Any, length: int) -> int:
    """Content tokens that fit a sequence of ``length`` beside the start (if any) and end tokens."""
    return int(length) - (1 if tokenizer.bos_token_id is None else 2)


def framed_ids(tokenizer: Any, content: Sequence[int], length: int) -> list[int]:
    """[start] + content + end, padded to ``length`` with the tokenizer's pad token, as the pipelines
    tokenise a prompt (``full_ids`` at a given length, for tokenizers without a start token too)."""
    start = [] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]
    ids = [*start, *list(content)[: capacity(tokenizer, length)], tokenizer.eos_token_id]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return ids + [pad] * (int(length) - len(ids))


def content_ids_at(tokenizer: Any, text: str, length: int) -> list[int]:
    """``content_ids`` for a pipeline that truncates at ``length``."""
    ids = tokenizer(text, truncation=True, max_length=int(length)).input_ids
    return [i for i in ids if i not in (tokenizer.bos_token_id, tokenizer.eos_token_id)][: capacity(tokenizer, length)]


def roundtrip_at(tokenizers: Sequence[Any], content: Sequence[int], length: int) -> Roundtrip:
    """``roundtrip`` against every tokenizer that reads the optimised ids (SDXL's two CLIPs share one
    vocabulary): the text is the first one's decoding; it matches when each gives the ids back."""
    content = [int(i) for i in content]
    text = decode(tokenizers[0], content)
    for tokenizer in tokenizers:
        again = content_ids_at(tokenizer, text, length)
        if again != content:
            first = next((i for i, (a, b) in enumerate(zip(content, again)) if a != b), min(len(content), len(again)))
            mismatch = {"first_mismatch": first, "n_optimised": len(content), "n_retokenized": len(again), "retokenized_ids": again}
            return Roundtrip(text, False, mismatch)
    return Roundtrip(text, True, None)


def whole_words(tokenizer: Any, ids: Sequence[int], length: int) -> list[int]:
    """The ids that are a word on their own: decoded alone, the text tokenises back to that one id.

    Both tokenizer kinds split text on whitespace before sub-word segmentation (CLIP's pattern never
    spans a space; T5's pre-tokenizer splits on it), so whole words written one after another, and
    next to whole words of other text, re-tokenise to the same ids: a prompt searched over them is
    text that gives back the tokens found."""
    texts = [decode(tokenizer, [int(i)]) for i in ids]
    return [int(i) for i, text in zip(ids, texts) if text and content_ids_at(tokenizer, text, length) == [int(i)]]


def word_boundaries(tokenizer: Any, content: Sequence[int], length: int) -> list[int]:
    """Positions in ``content`` where a word starts or ends: the start, the end, and every cut where the
    decoded text already has a space and whose left side re-tokenises to itself. A whole word
    inserted there, or a cut made there, leaves how the rest tokenises unchanged (a word that
    truncation left unfinished at the end stays one word too)."""
    content = [int(i) for i in content]
    whole = decode(tokenizer, content)
    cuts = [0]
    for cut in range(1, len(content)):
        left, right = content[:cut], content[cut:]
        text = decode(tokenizer, left)
        if f"{text} {decode(tokenizer, right)}".strip() == whole and content_ids_at(tokenizer, text, length) == left:
            cuts.append(cut)
    return cuts + [len(content)] if content else cuts
