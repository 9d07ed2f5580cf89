"""Tokenizers built offline: CLIP's byte-level BPE scheme and a small T5 Unigram vocabulary.

Neither needs the hub. The CLIP one has only single-character tokens (no merges) unless a real vocabulary
folder is given; the T5 one knows printable ASCII, each character with and without a word-start marker.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import CLIPTokenizer, T5TokenizerFast

from ...pocket.tokenizer import bytes_to_unicode

# OpenCLIP (SDXL's and SD3's second encoder) pads with token 0, which is "!" in CLIP's byte-level alphabet.
OPENCLIP_PAD = "!"


def write_char_tokenizer(folder: Path, model_max_length: int = 77) -> Path:
    """A CLIPTokenizer folder whose vocabulary is the 512 byte-level symbols plus start/end tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    config = {
        "model_max_length": model_max_length,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "tokenizer_class": "CLIPTokenizer",
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


def clip_tokenizer(tokenizer_dir: Path | None = None, pad_token: str | None = None) -> CLIPTokenizer:
    """CLIP's tokenizer from a vocabulary folder, or the character-level one; `pad_token` overrides padding."""
    overrides = {} if pad_token is None else {"pad_token": pad_token}
    if tokenizer_dir is not None:
        return CLIPTokenizer.from_pretrained(str(tokenizer_dir), **overrides)
    # The tokenizer reads its files when built, so the scratch folder need not outlive it.
    with tempfile.TemporaryDirectory(prefix="trce-tok-") as scratch:
        return CLIPTokenizer.from_pretrained(str(write_char_tokenizer(Path(scratch))), **overrides)


def t5_tokenizer(model_max_length: int = 512) -> T5TokenizerFast:
    """A T5 tokenizer over printable ASCII: pad 0, end 1, unknown 2, as T5's own ids; 192 tokens.

    Word-initial characters score higher than a bare marker plus the character, so a word starts with one
    "▁x" token, as SentencePiece would split it. The pre-tokenizer and decoder are the ones transformers
    rebuilds for T5 when it loads a saved folder, so a saved and reloaded tokenizer gives the same ids.
    512 is T5's own `model_max_length`; FLUX pads its prompts to up to 512 tokens.
    """
    chars = [chr(c) for c in range(33, 127)]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("▁" + c, -2.5) for c in chars]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)],
    )
    return T5TokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0,
        model_max_length=model_max_length,
    )
