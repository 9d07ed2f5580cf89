"""Build CLIP's BPE tokenizer files (vocab.json + merges.txt) for the pocket model.

The vocabulary is reconstructed from OpenAI CLIP's ``bpe_simple_vocab_16e6.txt.gz``
(shipped e.g. inside the ``open_clip_torch`` wheel) with the same construction
as CLIP's own tokenizer: the 256 byte-level unicode characters, their ``</w>``
variants, the first 49152-256-2 merges joined, then ``<|startoftext|>`` and
``<|endoftext|>`` -- 49408 entries.  The result loads offline with
``transformers.CLIPTokenizer`` and behaves like SD's tokenizer: BOS, tokens,
EOS, padded to 77 with ``<|endoftext|>``.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import zipfile
from pathlib import Path

VOCAB_SIZE = 49408
MAX_LENGTH = 77
BOS = "<|startoftext|>"
EOS = "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """Byte -> printable unicode char map used by GPT-2/CLIP byte-level BPE."""
    keep = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\u00a1"), ord("\u00ac") + 1))
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    )
    chars = list(keep)
    extra = 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(keep, chars)}


def _read_bpe_lines(source: str | os.PathLike | None) -> list[str]:
    """Return the lines of bpe_simple_vocab_16e6.txt from a .gz, a wheel, or installed open_clip."""
    candidates: list[Path] = []
    if source is not None:
        candidates.append(Path(source))
    else:
        try:  # installed open_clip
            spec = importlib.util.find_spec("open_clip")
            if spec is not None and spec.origin:
                candidates.append(Path(spec.origin).parent / "bpe_simple_vocab_16e6.txt.gz")
        except Exception:  # pragma: no cover
            pass
        candidates += [
            Path("/tmp/oc/open_clip/bpe_simple_vocab_16e6.txt.gz"),
            Path("/opt/pypi/files/open_clip_torch-3.3.0-py3-none-any.whl"),
        ]
    for path in candidates:
        if not path.exists():
            continue
        if path.suffix == ".whl":
            with zipfile.ZipFile(path) as zf:
                raw = zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
            return gzip.decompress(raw).decode("utf-8").split("\n")
        return gzip.open(path, "rt", encoding="utf-8").read().split("\n")
    raise FileNotFoundError(
        "bpe_simple_vocab_16e6.txt.gz not found; `pip download --no-deps open_clip_torch==3.3.0` "
        "and pass the wheel or the extracted .gz path"
    )


def build_vocab_and_merges(source=None) -> tuple[dict[str, int], list[str]]:
    lines = _read_bpe_lines(source)
    # line 0 is a version header; CLIP keeps 49152-256-2 merges
    merge_lines = lines[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merge_lines]
    base = list(bytes_to_unicode().values())
    vocab_list = base + [c + "</w>" for c in base]
    vocab_list += ["".join(m) for m in merges]
    vocab_list += [BOS, EOS]
    assert len(vocab_list) == VOCAB_SIZE, len(vocab_list)
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    assert len(vocab) == VOCAB_SIZE
    return vocab, [" ".join(m) for m in merges]


def write_tokenizer(out_dir: str | os.PathLike, source=None) -> Path:
    """Write vocab.json, merges.txt and tokenizer/special-tokens configs to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab_and_merges(source)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    cfg = dict(special)
    cfg.update(
        {
            "tokenizer_class": "CLIPTokenizer",
            "model_max_length": MAX_LENGTH,
            "do_lower_case": True,
            "errors": "replace",
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": True,
        }
    )
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return out


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(description="build CLIP BPE tokenizer files")
    ap.add_argument("--out", required=True)
    ap.add_argument("--source", default=None, help="bpe_simple_vocab_16e6.txt.gz or open_clip wheel")
    a = ap.parse_args()
    print(write_tokenizer(a.out, a.source))
