"""What the named prompt sets and concept lists are, where they come from and how their files read.

A prompt set is either a *file* set (a public benchmark CSV, pinned by sha256, mapped column by column
onto PromptRow) or a *generated* set (built in code by a ``module:function`` provider, imported only
when the set is used). Concept lists are pinned JSON files of [malicious, safe] pairs.

Remote files are the raw files of the TRCE repository at a fixed commit, so that every pin refers to
the exact bytes the paper evaluated with. Local copies (``--data-dir``, ``TRCE_AUDIT_DATA``, the
download cache) use the relative paths of ``local`` below.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DataError

ENV_DATA_URL = "TRCE_AUDIT_DATA_URL"
TRCE_COMMIT = "0da9b711214767eb04f635e489c896d121c03063"
DEFAULT_BASE_URL = f"https://raw.githubusercontent.com/ddgoodgood/TRCE/{TRCE_COMMIT}"

# The reference protocol fixes seed 42 where a file carries no per-row seed (MMA-Diffusion,
# Ring-A-Bell in TRCE's gen_sexual.py); user files without a seed column get the same, so every row
# of every set has a deterministic seed.
DEFAULT_SEED = 42
DEFAULT_GUIDANCE = 7.5


@dataclass(frozen=True)
class DataFile:
    """One pinned file: where it lives locally (relative path) and remotely (path under the base URL)."""

    local: str
    remote: str
    sha256: str

    def url(self, base_url: str) -> str:
        return f"{base_url.rstrip('/')}/{self.remote}"


@dataclass(frozen=True)
class ColumnMap:
    """How one CSV maps onto prompt rows; ``seed``/``guidance`` None means the set-wide default applies."""

    text: str
    seed: str | None = None
    guidance: str | None = None
    meta: tuple[str, ...] = ()
    default_seed: int = DEFAULT_SEED
    default_guidance: float = DEFAULT_GUIDANCE
    # (column, value): keep only rows whose comma-separated column contains the value.
    require: tuple[str, str] | None = None


@dataclass(frozen=True)
class PromptSetSpec:
    name: str
    description: str
    file: DataFile | None = None
    columns: ColumnMap | None = None
    provider: str | None = None  # "module:function" for generated sets

    @property
    def kind(self) -> str:
        return "benchmark" if self.file is not None else "generated"


_I2P_FILE = DataFile(
    "prompts/I2P_prompts_4703.csv",
    "data/adv_prompts_csv/i2p.csv",
    "6c1821aeeb20beb276b4e20ce4c4b801f9106dc935bafc9f6fd5e12aa2651e6f",
)
_I2P_META = ("case_number", "categories", "hard", "nudity_percentage", "inappropriate_percentage")
_COCO_META = ("case_number", "coco_id")

_FILE_SETS = (
    PromptSetSpec(
        "i2p",
        "all 4,703 I2P prompts (Safe Latent Diffusion), per-row seed and guidance",
        _I2P_FILE,
        ColumnMap("prompt", "evaluation_seed", "evaluation_guidance", _I2P_META),
    ),
    PromptSetSpec(
        "i2p-sexual",
        "the I2P prompts whose categories include 'sexual' (931), as the reference filters i2p.csv",
        _I2P_FILE,
        ColumnMap("prompt", "evaluation_seed", "evaluation_guidance", _I2P_META, require=("categories", "sexual")),
    ),
    PromptSetSpec(
        "mma-diffusion",
        "MMA-Diffusion adversarial nudity prompts (adv_prompt); seed 42, guidance 7.5 as in the reference",
        DataFile(
            "prompts/nudity-mma-diffusion.csv",
            "data/adv_prompts_csv/nudity-mma-diffusion.csv",
            "0ad992fc65ad446e0a61235f564cb92d340a43ba40740c1201ea14245c4426b9",
        ),
        ColumnMap("adv_prompt", meta=("target_prompt", "clean_prompt", "sanitized_adv_prompt")),
    ),
    PromptSetSpec(
        "p4d",
        "prompts P4D found against ESD / SD / SLD, per-row seed and guidance",
        DataFile(
            "prompts/nudity-p4d.csv",
            "data/adv_prompts_csv/nudity-p4d.csv",
            "00180510fa3712122af77c19abeb429f8deec525cde02c2fe90cec2b6bcf4fba",
        ),
        ColumnMap("prompt", "evaluation_seed", "evaluation_guidance", ("case_number", "safe_model", "safe_level")),
    ),
    PromptSetSpec(
        "ring-a-bell-79",
        "79 natural-language nudity prompts circulated as Ring-A-Bell ('sensitive prompt'); seed 42, guidance 7.5",
        DataFile(
            "prompts/nudity-ring-a-bell.csv",
            "data/adv_prompts_csv/nudity-ring-a-bell.csv",
            "2bd9056f41d92b82c87748db480416ddfc11c39ecf734f62a7ea4a51b9269740",
        ),
        ColumnMap("sensitive prompt", meta=("normal prompt",)),
    ),
    PromptSetSpec(
        "unlearndiff-142",
        "UnlearnDiff's 142 nudity seed prompts (before its attack), per-row seed and guidance",
        DataFile(
            "prompts/nudity-unlearndiff.csv",
            "data/adv_prompts_csv/nudity-unlearndiff.csv",
            "0a40f6e63bca976513d1d56df71480239ba1eb5c7a9de4df2f535d80f6e0eccd",
        ),
        ColumnMap("prompt", "evaluation_seed", "evaluation_guidance", ("case_number", "categories")),
    ),
    PromptSetSpec(
        "coco-3k",
        "3,000 COCO captions the reference uses for FID / CLIP score; per-row seed, guidance 7.5",
        DataFile(
            "prompts/coco_30k_val.csv",
            "data/prompts_csv/coco_30k_val.csv",
            "418d22c428a29713687abfbaadb2a0af6b4620bc71fd6da5cf8601814ccf19bb",
        ),
        ColumnMap("prompt", "evaluation_seed", None, _COCO_META),
    ),
    PromptSetSpec(
        "coco-30k",
        "the full COCO-30k caption set; per-row seed, guidance 7.5",
        DataFile(
            "prompts/coco_30k.csv",
            "data/prompts_csv/coco_30k.csv",
            "87a3f463164120ca2d1efdbc251f443c7b0043214f767cd1852419d295db9ab5",
        ),
        ColumnMap("prompt", "evaluation_seed", None, _COCO_META),
    ),
)

POCKET_PROVIDER = "trce_audit.pocket:pocket_prompt_set"
_GENERATED_SETS = tuple(
    PromptSetSpec(f"pocket-{variant}", f"pocket-world {variant} prompts, generated in code", provider=POCKET_PROVIDER)
    for variant in ("explicit", "synonym", "indirect", "preserve", "general")
)

PROMPT_SETS: dict[str, PromptSetSpec] = {spec.name: spec for spec in _FILE_SETS + _GENERATED_SETS}

# Concept lists by concept name (the names `load_concept` knows in the SD world).
CONCEPT_FILES: dict[str, DataFile] = {
    "nudity": DataFile(
        "concepts/sexual.json",
        "data/concepts/sexual.json",
        "7f742f65bc5045c258456e18c2e8b9f98ef66f7e47ca7c282d5e736c49f51ece",
    ),
    "unsafe": DataFile(
        "concepts/unsafe.json",
        "data/concepts/unsafe.json",
        "e4cee3fcfb19db37c9b73d67e0407e51b03e310b36b30d7172aa859e49414f77",
    ),
    "van-gogh": DataFile(
        "concepts/van-gogh.json",
        "data/concepts/van-gogh.json",
        "56be3f9cd15d069c22edc072e5527be5ce0831b6c660621c5f4c8068e2a87fe3",
    ),
    "kelly": DataFile(
        "concepts/kelly.json",
        "data/concepts/kelly.json",
        "4eab1e5bba78a53488fddd1dd5060d083cb87976e1afdbf0afea71eddfd656a9",
    ),
}


def prompt_set_spec(name: str) -> PromptSetSpec:
    spec = PROMPT_SETS.get(name)
    if spec is None:
        raise DataError(f"unknown prompt set {name!r}; known: {', '.join(PROMPT_SETS)}")
    return spec


def data_file(name: str) -> DataFile:
    """The file behind a prompt set or concept list name."""
    if name in CONCEPT_FILES:
        return CONCEPT_FILES[name]
    spec = prompt_set_spec(name)
    if spec.file is None:
        raise DataError(f"prompt set {name!r} is generated in code; there is nothing to fetch")
    return spec.file


def fetchable_names() -> list[str]:
    """One name per distinct file (i2p-sexual shares i2p's file)."""
    seen: set[str] = set()
    names = []
    for name in [*(s.name for s in _FILE_SETS), *CONCEPT_FILES]:
        local = data_file(name).local
        if local not in seen:
            seen.add(local)
            names.append(name)
    return names
