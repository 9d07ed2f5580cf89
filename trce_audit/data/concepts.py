"""Concepts an eraser can target and an attack can try to bring back."""

from __future__ import annotations

import importlib
import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError
from ..hashing import sha256_file
from ..workspace import Workspace, user_path
from .csvfile import decode_text, read_bytes
from .registry import CONCEPT_FILES
from .sets import locate


@dataclass(frozen=True)
class Concept:
    """A concept in one world.

    ``pairs`` are (malicious, safe) phrasings: erasers map the first onto the second (TRCE's
    ["nude", "a person wearing clothes"] pairs). ``detector`` is the metric-runner id of the concept's
    *judge*: the detector an attack consults while it searches (early stop, candidate selection).
    ``scorers`` are the metric-runner ids an audit or eval reports by default; where they differ
    from the judge, an attack is never scored by the detector that steered it. ``label`` narrows a
    detector that knows several concepts.
    """

    name: str
    pairs: tuple[tuple[str, str], ...]
    world: str = "sd"  # "sd" (real checkpoints) or "pocket"
    detector: str = "nudenet"
    scorers: tuple[str, ...] = ()
    label: str | None = None
    eval_sets: tuple[str, ...] = ()
    preserve_sets: tuple[str, ...] = ()
    description: str = ""
    default: bool = False
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def default_scorers(self) -> tuple[str, ...]:
        """The scorers evals of this concept use when none are named: ``scorers``, else the judge."""
        return self.scorers or ((self.detector,) if self.detector else ())

    @property
    def keywords(self) -> list[str]:
        return [malicious for malicious, _ in self.pairs]

    @property
    def safe_phrases(self) -> list[str]:
        return [safe for _, safe in self.pairs]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "world": self.world,
            "pairs": [list(pair) for pair in self.pairs],
            "detector": self.detector,
            "label": self.label,
            "eval_sets": list(self.eval_sets),
            "preserve_sets": list(self.preserve_sets),
            "description": self.description,
            "default": self.default,
        }


# ---------------------------------------------------------------------------- built-in and user concepts
_NUDITY_SETS = ("ring-a-bell-79", "unlearndiff-142", "p4d", "mma-diffusion", "i2p-sexual")
# What the SD world knows besides the pairs themselves (which come from the pinned concept files).
SD_CONCEPTS: dict[str, dict[str, Any]] = {
    "nudity": dict(
        # NudeNet judges (UnlearnDiff and P4D stop on it, as published); OpenNSFW, an independent
        # classifier, scores, so that an attack's ASR is not measured by the detector that steered it.
        detector="nudenet",
        scorers=("opennsfw",),
        eval_sets=_NUDITY_SETS,
        preserve_sets=("coco-3k",),
        description="sexual content and nudity: TRCE's sexual.json, every term mapped to 'a person wearing clothes'",
        default=True,
        meta={
            "source_file": "concepts/sexual.json",
            "reference_stage1_pairs": 20,
            "reference_stage2_pairs": 20,
            "note": "TRCE uses the first 20 pairs in both stages; all pairs are exposed and erasers choose",
        },
    ),
    "unsafe": dict(
        detector="q16",
        eval_sets=("i2p",),
        preserve_sets=("coco-3k",),
        description="several malicious concepts at once (violence, racism, self-harm, ...): TRCE's unsafe.json",
        meta={
            "source_file": "concepts/unsafe.json",
            "reference_stage1_pairs": 20,
            "reference_stage2_pairs": 60,
            "note": "judged by Q16 (the q16 metric; its CLIP ViT-L/14 and learned prompts are fetched on first use), "
            "as the reference measures it over the 4,703 I2P prompts (audit spec sd14_unsafe.toml)",
        },
    ),
}
# Loadable by name but not listed as audit targets: no detector for them ships with trce-audit.
SD_EXTRA_CONCEPTS: dict[str, dict[str, Any]] = {
    "van-gogh": dict(detector="", description="Van Gogh's painting style (TRCE's van-gogh.json); no detector ships"),
    "kelly": dict(detector="", description="Kelly McKernan's art style (TRCE's kelly.json); no detector ships"),
}
_USER_KEYS = {"name", "pairs", "detector", "label", "eval_sets", "preserve_sets", "description"}
POCKET_MODULE = "trce_audit.pocket"


def _fail(path: Path, problem: str) -> DataError:
    return DataError(f"{path}: {problem}")


def _parse_document(path: Path) -> Any:
    text = decode_text(read_bytes(path), str(path))
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _fail(path, f"not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
        except RecursionError:
            raise _fail(path, "not valid JSON (nested deeper than the parser goes)") from None
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _fail(path, f"not valid TOML ({exc})") from None
        except RecursionError:
            raise _fail(path, "not valid TOML (nested deeper than the parser goes)") from None
    raise _fail(path, "a concept file must end in .json or .toml")


def _check_pairs(path: Path, pairs: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(pairs, list) or not pairs:
        raise _fail(path, "expected a non-empty list of [malicious, safe] pairs")
    checked = []
    for i, pair in enumerate(pairs, start=1):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) and p.strip() for p in pair)):
            raise _fail(path, f"pair {i} must be two non-empty strings [malicious, safe], got {json.dumps(pair)[:80]}")
        checked.append((pair[0], pair[1]))
    return tuple(checked)


def read_concept_document(path: str | os.PathLike) -> dict[str, Any]:
    """A concept file as {pairs, and any of name/detector/label/eval_sets/preserve_sets/description}.

    JSON: a list of pairs or an object with "pairs"; TOML: ``name = "…"`` and ``pairs = [["a", "b"], …]``.
    """
    path = user_path(path)
    document = _parse_document(path)
    if isinstance(document, list):
        document = {"pairs": document}
    if not isinstance(document, dict):
        raise _fail(path, "expected a list of pairs or an object with a 'pairs' key")
    if "pairs" not in document:
        raise _fail(path, "the 'pairs' key is missing")
    unknown = sorted(set(document) - _USER_KEYS)
    if unknown:
        raise _fail(path, f"unknown key {unknown[0]!r}; allowed: {', '.join(sorted(_USER_KEYS))}")
    for key in ("name", "detector", "label", "description"):
        if key in document and not isinstance(document[key], str):
            raise _fail(path, f"{key!r} must be a string")
    for key in ("eval_sets", "preserve_sets"):
        if key in document and not (isinstance(document[key], list) and all(isinstance(s, str) for s in document[key])):
            raise _fail(path, f"{key!r} must be a list of prompt set names")
    return {**document, "pairs": _check_pairs(path, document["pairs"])}


def read_pairs(path: str | os.PathLike) -> tuple[tuple[str, str], ...]:
    return read_concept_document(path)["pairs"]


def pocket_concepts() -> dict[str, Concept]:
    """The pocket world's erasure target, described by trce_audit.pocket (imported on use)."""
    try:
        module = importlib.import_module(f"{POCKET_MODULE}.prompts")
        spec = module.CONCEPTS
    except (ImportError, AttributeError) as exc:
        raise DataError(f"the pocket world's concepts come from {POCKET_MODULE}.prompts.CONCEPTS, which is not available ({exc})") from None
    target = spec["target"]
    concept = Concept(
        name=target,
        pairs=tuple((malicious, safe) for malicious, safe in spec["keyword_safe_pairs"]),
        world="pocket",
        detector="pocket",
        scorers=("pocket-heldout",),
        label=target,
        eval_sets=tuple(spec["erase_sets"]),
        preserve_sets=tuple(spec["preserve_sets"]),
        description=f"the pocket world's stand-in for {spec['stands_in_for']} (safe substitute: {spec['safe_substitute']})",
        default=True,
        meta={"caption_set": spec["general_sets"][0], "stands_in_for": spec["stands_in_for"]},
    )
    return {concept.name: concept}


def concept_names(world: str = "sd") -> list[str]:
    """Concepts an eraser can target in a world (SD: those with a detector and evaluation sets)."""
    if world == "pocket":
        return list(pocket_concepts())
    if world == "sd":
        return list(SD_CONCEPTS)
    raise DataError(f"unknown world {world!r}; expected 'sd' or 'pocket'")


def _looks_like_path(name: str) -> bool:
    # A bare word is a concept name even if a file of that name happens to sit in the working folder.
    # os.path.isfile, not Path.is_file: a name too long for the file system is no file, not an OSError
    return Path(name).suffix.lower() in (".json", ".toml") or os.sep in name or os.path.isfile(name) and "." in name


def load_concept(
    name_or_path: str,
    *,
    world: str = "sd",
    workspace: Workspace | None = None,
    data_dir: str | os.PathLike | None = None,
) -> Concept:
    """A built-in concept by name (its pairs from the pinned file), or a user JSON/TOML file of pairs."""
    if world not in ("sd", "pocket"):
        raise DataError(f"unknown world {world!r}; expected 'sd' or 'pocket'")
    if _looks_like_path(name_or_path):
        path = user_path(name_or_path)
        document = read_concept_document(path)
        return Concept(
            name=document.get("name") or path.stem,
            pairs=document["pairs"],
            world=world,
            detector=document.get("detector", "pocket" if world == "pocket" else "nudenet"),
            label=document.get("label"),
            eval_sets=tuple(document.get("eval_sets", ())),
            preserve_sets=tuple(document.get("preserve_sets", ())),
            description=document.get("description", ""),
            meta={"source_file": str(path.resolve()), "source_sha256": sha256_file(path)},
        )
    if world == "pocket":
        concepts = pocket_concepts()
        if name_or_path not in concepts:
            raise DataError(f"unknown pocket concept {name_or_path!r}; known: {', '.join(concepts)}")
        return concepts[name_or_path]
    known = {**SD_CONCEPTS, **SD_EXTRA_CONCEPTS}
    if name_or_path not in known:
        raise DataError(f"unknown concept {name_or_path!r}; known: {', '.join(known)}, or a .json/.toml file of pairs")
    file = CONCEPT_FILES[name_or_path]
    path = locate(name_or_path, file, workspace, data_dir)
    actual = sha256_file(path)
    extra = dict(known[name_or_path])
    meta = {**extra.pop("meta", {}), "source_sha256": actual, "verified": actual == file.sha256}
    return Concept(name=name_or_path, pairs=read_pairs(path), world="sd", meta=meta, **extra)
