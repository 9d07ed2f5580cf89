"""Learned token embeddings (textual inversion) that travel with prompt rows.

A row whose meta carries ``learned_token`` = {token, sha256, path, slot_id} has the placeholder
``token`` in its text, and the safetensors file at ``path`` ({token: vector}, the format diffusers'
``load_textual_inversion`` reads) holds the vector, checked against ``sha256`` when loaded. The text
encoder sees the prompt with the placeholder as one position whose input embedding is that vector:
the position carries ``slot_id`` (a real token id, so the end-token lookup of the pooled output is
untouched) and the token-embedding lookup is hooked to return the vector there. Nothing is added to
the tokenizer or the embedding table: a cached pipeline stays as it was, and a plain prompt that
happens to spell the placeholder is encoded as the plain text it is.

The other families (SDXL, SD3, FLUX) have several text encoders and learn one vector for each: the
entry carries ``slot_ids`` ({encoder key: slot id}) instead of ``slot_id``, and the file holds one
[1, d] tensor per encoder under the keys of diffusers' pivotal-tuning files, "clip_l", "clip_g" and
"t5" (models/families ``TextInput.key``), each loadable with ``pipe.load_textual_inversion(
state_dict[key], token=..., text_encoder=..., tokenizer=...)``. The placeholder is one position in
every tokenizer's ids and every encoder's lookup is hooked the same way (``encode_injected``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError
from ..hashing import sha256_bytes
from ..models import tokens as tk
from ..workspace import temp_sibling

META_KEY = "learned_token"


def learned_sha(row: Any) -> str | None:
    """The sha256 of the embedding a row is drawn with (None for a plain row)."""
    entry = (row.meta or {}).get(META_KEY)
    return entry.get("sha256") if isinstance(entry, dict) else None


def save_embedding(folder: Path, token: str, vector: Any) -> tuple[Path, str]:
    """Write ``{token: vector}`` content-addressed as ``<sha256>.safetensors``; rewriting the same
    vector is a no-op, so a rerun never duplicates a file."""
    return _write(folder, {token: vector.detach().float().cpu().contiguous()})


def save_vectors(folder: Path, token: str, vectors: dict[str, Any]) -> tuple[Path, str]:
    """Write one vector per text encoder ({key: [1, d]}, the placeholder in the header's metadata),
    content-addressed as ``save_embedding`` writes."""
    tensors = {key: vector.detach().float().cpu().reshape(1, -1).contiguous() for key, vector in vectors.items()}
    return _write(folder, tensors, {"token": token})


def _write(folder: Path, tensors: dict[str, Any], metadata: dict[str, str] | None = None) -> tuple[Path, str]:
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    digest = sha256_bytes(data)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.safetensors"
    if not path.is_file() or sha256_bytes(path.read_bytes()) != digest:
        tmp = temp_sibling(path)
        tmp.write_bytes(data)
        os.replace(tmp, path)  # a kill mid-write never leaves a truncated file under the final name
    return path, digest


def load_embedding(entry: dict[str, Any]) -> Any:
    """The vector a row's ``learned_token`` entry names, after checking the file's sha256."""
    tensors, path = _read(entry)
    if "slot_ids" in entry:
        raise DataError(f"learned embedding {path} holds one vector per text encoder ({', '.join(sorted(entry['slot_ids']))}); this sd model has one")
    if entry.get("token") not in tensors:
        raise DataError(f"learned embedding {path} holds no vector for {entry.get('token')!r}")
    return tensors[entry["token"]]


def load_vectors(entry: dict[str, Any], inputs: Sequence[Any], family: str) -> dict[str, Any]:
    """The vectors ([d] each, by encoder key) a row's entry names, after checking the file's sha256
    and that it holds a vector of the right width for each of ``inputs`` (the model's TextInputs) and
    no other."""
    tensors, path = _read(entry)
    wanted = [text.key for text in inputs]
    if "slot_ids" not in entry:
        raise DataError(f"learned embedding {path} holds one vector (an sd model's); this {family} model needs one per text encoder ({', '.join(wanted)})")
    if sorted(entry["slot_ids"]) != sorted(wanted) or not set(wanted) <= set(tensors):
        raise DataError(f"learned embedding {path} holds vectors for {', '.join(sorted(entry['slot_ids']))}; this {family} model's text encoders are {', '.join(wanted)}")
    vectors = {}
    for text in inputs:
        vector, width = tensors[text.key].reshape(-1), tk.input_lookup(text.encoder).weight.shape[-1]
        if vector.shape[0] != width:
            raise DataError(f"learned embedding {path}: its {text.key} vector has width {vector.shape[0]}; this {family} model's {text.key} encoder takes {width}")
        vectors[text.key] = vector
    return vectors


def _read(entry: dict[str, Any]) -> tuple[dict[str, Any], Path]:
    from safetensors.torch import load

    path = Path(str(entry.get("path", "")))
    if not path.is_file():
        raise DataError(f"learned embedding {path} (sha256 {entry.get('sha256')}) is missing; rerun the attack that made it")
    data = path.read_bytes()
    if sha256_bytes(data) != entry.get("sha256"):
        raise DataError(f"learned embedding {path} does not match its recorded sha256 {entry.get('sha256')}")
    return load(data), path


def layout(tokenizer: Any, text: str, token: str, slot_id: int) -> tuple[list[int], list[int]]:
    """Padded ids of ``text`` (start, content, end, padding, as the pipeline pads) with each
    ``token`` as one ``slot_id`` position, and those positions."""
    content, slots = _content(tokenizer, text, token, slot_id)
    kept = tk.max_content(tokenizer)
    return tk.full_ids(tokenizer, content[:kept]), [1 + s for s in slots if s < kept]


def layout_to(tokenizer: Any, text: str, token: str, slot_id: int, length: int) -> tuple[list[int], list[int]]:
    """``layout`` for any tokenizer and padded length: the tokenizer's own special ids around the
    content (CLIP: start and end; T5: end only), padded with its pad token to ``length``, as the
    pipelines tokenise (models/families/sd.py ``padded_ids``)."""
    content, slots = _content(tokenizer, text, token, slot_id)
    head, tail = special_ends(tokenizer)
    kept = int(length) - len(head) - len(tail)
    ids = head + content[:kept] + tail
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return ids + [pad] * (int(length) - len(ids)), [len(head) + s for s in slots if s < kept]


def special_ends(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer adds before and after a text's content."""
    full = tokenizer("a", truncation=False).input_ids
    bare = tokenizer("a", add_special_tokens=False, truncation=False).input_ids
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    raise DataError(f"cannot find the special tokens of a {type(tokenizer).__name__}: {full} does not contain {bare}")


def _content(tokenizer: Any, text: str, token: str, slot_id: int) -> tuple[list[int], list[int]]:
    """Content ids of ``text`` with each ``token`` as one ``slot_id`` position, and those positions."""
    content: list[int] = []
    slots: list[int] = []
    for i, piece in enumerate(text.split(token)):
        if i:
            slots.append(len(content))
            content.append(int(slot_id))
        if piece.strip():
            content += tokenizer(piece, add_special_tokens=False, truncation=False).input_ids
    return content, slots


def learned_inputs(tokenizer: Any, encoder: Any, ids: Any, rows: Sequence[Any], cache: dict[str, Any]) -> tuple[Any, Any]:
    """(ids, input embeddings) for a batch: rows with a learned token get their slot layout and the
    vector at the slot; ``cache`` keeps loaded vectors by sha256."""
    import torch

    ids = ids.clone()
    plans = []
    for i, row in enumerate(rows):
        entry = (row.meta or {}).get(META_KEY)
        if not isinstance(entry, dict):
            continue
        if entry["sha256"] not in cache:
            cache[entry["sha256"]] = load_embedding(entry)
        row_ids, positions = layout(tokenizer, row.text, entry["token"], entry["slot_id"])
        ids[i] = torch.tensor(row_ids, device=ids.device)
        plans.append((i, positions, cache[entry["sha256"]]))
    with torch.no_grad():
        embeds = tk.token_embedding(encoder)(ids).clone()
    for i, positions, vector in plans:
        embeds[i, positions] = vector.to(embeds.device, embeds.dtype)
    return ids, embeds


def slot_batch(text: Any, texts: Sequence[str], slots: Sequence[tuple[str, int] | None], device: Any,
               vectors: Sequence[Any] | None = None) -> tuple[Any, Any, Any]:
    """(ids [B, L], slot mask [B, L, 1], values [B, 1, d] or None) of ``texts`` for one of a family's
    text inputs (models/families ``TextInput``): text i laid out with ``slots[i] = (token, slot id)``
    as one slot position, or, for None, tokenised as the family's pipeline tokenises it; ``vectors[i]``
    (when given; None for a plain text) the vector at text i's slots."""
    import torch

    plain = lambda t: (text.tokenizer(t, padding="max_length", max_length=text.length, truncation=True).input_ids, [])  # noqa: E731
    laid = [layout_to(text.tokenizer, t, *slot, text.length) if slot else plain(t) for t, slot in zip(texts, slots)]
    ids = torch.tensor([row_ids for row_ids, _ in laid], device=device)
    mask = torch.zeros(ids.shape + (1,), dtype=torch.bool, device=device)
    for i, (_, positions) in enumerate(laid):
        mask[i, positions] = True
    if vectors is None:
        return ids, mask, None
    values = torch.zeros(len(laid), 1, tk.input_lookup(text.encoder).weight.shape[-1], device=device)
    for i, vector in enumerate(vectors):
        if vector is not None:
            values[i, 0] = vector.to(device)
    return ids, mask, values


def encode_injected(family: Any, pipe: Any, ids: dict[str, Any], overrides: dict[str, tuple[Any, Any]], dtype: Any,
                    max_sequence_length: int | None = None) -> Any:
    """The family's conditioning of laid-out ``ids`` ({encoder key: [B, L]}) with each encoder's
    input-embedding lookup overridden where ``overrides[key] = (mask [B, L, 1], values)`` says
    (``values`` [B, 1, d] or [d], broadcast): the encoders' own layers read the vectors, and gradients
    flow into them."""
    encoders = {text.key: text.encoder for text in family.text_inputs(pipe, max_sequence_length)}
    place = lambda mask, values: lambda looked_up: looked_up.where(~mask, values.to(looked_up.dtype))  # noqa: E731
    with tk.replaced_lookups([(encoders[key], place(mask, values)) for key, (mask, values) in overrides.items()]):
        return family.encode_ids(pipe, ids, dtype, max_sequence_length)


def learned_condition(family: Any, pipe: Any, texts: Sequence[str], rows: Sequence[Any], device: Any, dtype: Any,
                      max_sequence_length: int | None, cache: dict[str, Any]) -> Any:
    """A batch's conditioning on a family with several text encoders: plain rows tokenised as the
    family tokenises them, rows with a learned token laid out with its slot in every tokenizer and
    that encoder's vector there; ``cache`` keeps loaded vectors by sha256."""
    inputs = family.text_inputs(pipe, max_sequence_length)
    entries = [row.meta[META_KEY] if learned_sha(row) else None for row in rows]
    for entry in entries:
        if entry is not None and entry["sha256"] not in cache:
            cache[entry["sha256"]] = load_vectors(entry, inputs, family.name)
    ids, overrides = {}, {}
    for text in inputs:
        slots = [None if e is None else (e["token"], e["slot_ids"][text.key]) for e in entries]
        vectors = [None if e is None else cache[e["sha256"]][text.key] for e in entries]
        ids[text.key], mask, values = slot_batch(text, texts, slots, device, vectors)
        overrides[text.key] = (mask, values)
    return encode_injected(family, pipe, ids, overrides, dtype, max_sequence_length)
