"""Greedy coordinate gradient (GCG) over a text encoder, as MMA-Diffusion uses it: the pieces of one step.

The prompt is [start, n free tokens, end]; the loss is 1 - cosine similarity between its pooled text
embedding (the final-layer state at the end token) and a target's. CLIP's text encoder is causal, so
the state at the end token depends only on the tokens before it: encoding just those n + 2 positions
gives the same pooled embedding as the padded 77 (tests/test_attack_mma.py checks it) at a fraction of
the cost.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..models import tokens as tk


# Shorter words are banned as whole tokens only: as substrings, "an" or "at" would ban a tenth of CLIP's
# vocabulary (the reference bans its hand-picked fragments "na", "ke", "ak" as substrings).
MIN_SUBSTRING = 4


def sensitive_ids(tokenizer: Any, words: Iterable[str]) -> set[int]:
    """Token ids the adversarial prompt may not use: every token whose text contains a sensitive word of
    at least MIN_SUBSTRING letters (the reference's rule), every token that is a sensitive word, and
    the sub-word pieces the tokenizer splits a sensitive word into."""
    words = [w.strip().lower() for w in words if w.strip()]
    whole = set(words) | {tk.token_word(tokenizer, i) for w in words for i in tk.content_ids(tokenizer, w)}
    inner = [w for w in words if len(w) >= MIN_SUBSTRING]
    return {
        token_id for token_id in tokenizer.get_vocab().values()
        if (text := tk.token_word(tokenizer, token_id)) and (text in whole or any(w in text for w in inner))
    }


def concept_words(concept: Any) -> list[str]:
    """The words of the concept's keyword phrases that none of its safe phrases uses: its pairs differ
    in the concept, so these carry it ("cross", "plus", "sign"; not "a" or "picture")."""
    safe = {w for phrase in concept.safe_phrases for w in phrase.lower().split()}
    return list(dict.fromkeys(w for phrase in concept.keywords for w in phrase.lower().split() if w not in safe))


def layout(tokenizer: Any, content: Any) -> Any:
    """(batch, n) content ids -> (batch, n + 2) ids [start, content, end]: all the pooled output reads."""
    import torch  # torch stays off the light path: listing attacks imports this module

    rows = content.shape[0]
    start = torch.full((rows, 1), tokenizer.bos_token_id, dtype=content.dtype, device=content.device)
    end = torch.full((rows, 1), tokenizer.eos_token_id, dtype=content.dtype, device=content.device)
    return torch.cat([start, content, end], dim=1)


def pooled(text_encoder: Any, ids: Any, embeds: Any = None) -> Any:
    if embeds is None:
        return text_encoder(ids)[1]
    with tk.substituted_token_embeddings(text_encoder, embeds):
        return text_encoder(ids)[1]


def cosine_loss(embeddings: Any, target: Any) -> Any:
    import torch.nn.functional as F

    return 1.0 - F.cosine_similarity(embeddings, target[None], dim=-1, eps=1e-6)


def token_gradients(text_encoder: Any, tokenizer: Any, current: Any, vocab: Any, target: Any, table: Any = None) -> Any:
    """d loss / d one-hot of each free position over the search vocabulary: (n, len(vocab)).
    ``table`` is the vocabulary's embedding rows (gathered once per search when given)."""
    import torch

    ids = layout(tokenizer, current[None])
    table = tk.token_embedding(text_encoder).weight[vocab] if table is None else table
    one_hot = (vocab[None, :] == current[:, None]).to(table.dtype).requires_grad_(True)
    with torch.no_grad():
        embeds = tk.token_embedding(text_encoder)(ids)
    free = one_hot @ table
    embeds = torch.cat([embeds[:, :1], free[None], embeds[:, 1 + len(current):]], dim=1)
    loss = cosine_loss(pooled(text_encoder, ids, embeds), target).sum()
    (grad,) = torch.autograd.grad(loss, one_hot)
    return grad


def sample_candidates(grad: Any, current: Any, vocab: Any, *, candidates: int, top_k: int, generator: Any) -> Any:
    """(candidates, n) ids: each replaces one position of ``current`` (positions spread evenly over the
    candidates, as the reference) by one of that position's ``top_k`` most negative-gradient tokens."""
    import torch

    n = current.shape[0]
    top = (-grad).topk(min(top_k, grad.shape[1]), dim=1).indices.cpu()
    positions = torch.arange(candidates) * n // candidates
    picks = top[positions, torch.randint(top.shape[1], (candidates,), generator=generator)]
    out = current.cpu().repeat(candidates, 1)
    out[torch.arange(candidates), positions] = vocab.cpu()[picks]
    return out


def valid_candidates(tokenizer: Any, candidates: Any, current_text: str, allowed: set[int]) -> list[tuple[str, list[int]]]:
    """(text, ids the text tokenises to) of the candidates whose decoded text re-tokenises to as many
    tokens (the reference's filter), differs from the current prompt, and uses only allowed tokens --
    so a sensitive word cannot come back by two pieces merging when the text is tokenised again."""
    n = candidates.shape[1]
    texts = [tk.decode(tokenizer, row) for row in candidates.tolist()]
    found: dict[str, list[int]] = {}
    for text, ids in zip(texts, tokenizer(texts, truncation=True, max_length=tokenizer.model_max_length).input_ids):
        ids = [i for i in ids if i not in (tokenizer.bos_token_id, tokenizer.eos_token_id)]
        if text != current_text and len(ids) == n and allowed.issuperset(ids):
            found.setdefault(text, ids)
    return list(found.items())
