"""Red-team attacks. Each module holds one family; ``BUILTIN`` maps plugin ids to classes lazily
(plain strings: importing this package imports no torch)."""

BUILTIN: dict[str, str] = {
    "ring-a-bell": "trce_audit.attacks.ring_a_bell:RingABell",
    "unlearndiff": "trce_audit.attacks.unlearndiff:UnlearnDiff",
    "p4d-n": "trce_audit.attacks.p4d:P4DN",
    "p4d-k": "trce_audit.attacks.p4d:P4DK",
    "mma-diffusion": "trce_audit.attacks.mma_diffusion:MMADiffusion",
    "replay": "trce_audit.attacks.replay:Replay",
    "concept-inversion": "trce_audit.attacks.inversion:ConceptInversion",
    "finetune-resurgence": "trce_audit.attacks.finetune:FinetuneResurgence",
}
