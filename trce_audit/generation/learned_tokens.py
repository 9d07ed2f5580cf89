"""Learned token embeddings (textual inversion) that travel with prompt rows.

A row whose meta carries ``learned_token`` = {token, sha256, path, slot_id} has the placeholder
``token`` in its text, and the safetensors file at ``path`` ({token: vector}, the format diffusers'
``load_textual_inversion`` reads) holds the vector, checked against ``sha256`` when loaded. The text
encoder sees the prompt with the placeholder as one position whose input embedding is that vector:
the position carries ``slot_id`` (a real token id, so the end-token lookup of the pooled output is
untouched) and the token-embedding lookup is hooked to return the vector there. Nothing is added to
the tokenizer or the embedding table: a cached pipeline stays as it was, and a plain prompt that
happens to spell the placeholder is encoded as the plain text it is.
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
    from safetensors.torch import save

    data = save({token: vector.detach().float().cpu().contiguous()})
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
    from safetensors.torch import load

    path = Path(str(entry.get("path", "")))
    if not path.is_file():
        raise DataError(f"learned embedding {path} (sha256 {entry.get('sha256')}) is missing; rerun the attack that made it")
    data = path.read_bytes()
    if sha256_bytes(data) != entry.get("sha256"):
        raise DataError(f"learned embedding {path} does not match its recorded sha256 {entry.get('sha256')}")
    tensors = load(data)
    if entry.get("token") not in tensors:
        raise DataError(f"learned embedding {path} holds no vector for {entry.get('token')!r}")
    return tensors[entry["token"]]


def layout(tokenizer: Any, text: str, token: str, slot_id: int) -> tuple[list[int], list[int]]:
    """Padded ids of ``text`` (start, content, end, padding, as the pipeline pads) with each
    ``token`` as one ``slot_id`` position, and those positions."""
    content: list[int] = []
    slots: list[int] = []
    for i, piece in enumerate(text.split(token)):
        if i:
            slots.append(len(content))
            content.append(int(slot_id))
        if piece.strip():
            content += tokenizer(piece, add_special_tokens=False, truncation=False).input_ids
    kept = tk.max_content(tokenizer)
    return tk.full_ids(tokenizer, content[:kept]), [1 + s for s in slots if s < kept]


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
