"""Erase the pocket target with several eraser settings and measure each, one Markdown row per setting.

    python benchmarks/pocket_sweep.py --workspace ws-sweep base "esd-x" "esd-x lr=1e-3 iterations=1000" \
        "uce preserve_scale=10" "trce stages=1"

Each setting is an eraser id followed by ``key=value`` config overrides (``stages=1`` selects TRCE
stages); ``base`` is the un-erased model. Every setting is one ``trce-audit erase`` plus four
``trce-audit eval`` runs (the first ``--limit`` rows of pocket-explicit, -synonym, -indirect and
-preserve, ``--steps`` steps, ``--metric``: the CNN judge ``pocket`` unless told), stored in the workspace, so a rerun reuses them.
Columns: ASR per erase set, ASR on the concept's own phrases (the bare phrases the erasers are given,
e.g. "a plus sign", four seeds each: how far an erasure generalises from them to whole sentences), the
cross rate on preserve prompts (leakage), preserve_acc (the requested shape is drawn) and the erase time
(0 when reused from the store).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SETS = ("pocket-explicit", "pocket-synonym", "pocket-indirect", "pocket-preserve")


def parse_setting(text: str) -> tuple[str, dict[str, str], str | None]:
    name, *pairs = text.split()
    overrides, stages = {}, None
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"setting {text!r}: {pair!r} is not key=value")
        if key == "stages":
            stages = value
        else:
            overrides[key] = value
    return name, overrides, stages


def main(argv: list[str] | None = None) -> int:
    from trce_audit.api import erase as erase_concept_by_name, evaluate as evaluate_model
    from trce_audit.generation import GenerationSettings
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help='"base" or "ERASER [key=value ...]"')
    parser.add_argument("--workspace", default="ws-sweep")
    parser.add_argument("--concept", default="cross")
    parser.add_argument("--model", default="pocket", help="the pocket model to erase: pocket (SD) or pocket-flux")
    parser.add_argument("--metric", default="pocket", help="the detector behind every column: pocket (the CNN judge) or pocket-heldout")
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    from trce_audit.data import load_concept
    from trce_audit.store import PromptRow

    workspace = Workspace.from_options(args.workspace).ensure()
    store = Store(workspace.db_url)
    settings = GenerationSettings(steps=args.steps, batch_size=args.batch_size)
    concept = load_concept(args.concept, world="pocket", workspace=workspace)
    own_rows = [PromptRow(phrase, 9000 + 10 * i + j, 7.5) for i, phrase in enumerate(concept.keywords) for j in range(4)]
    own_set = next((ps.id for ps in store.list_prompt_sets() if ps.name == f"{concept.name}-own-phrases"), None)
    if own_set is None:
        own_set = store.add_prompt_set(f"{concept.name}-own-phrases", own_rows, source="benchmarks/pocket_sweep.py")
    print("| setting | explicit | synonym | indirect | own phrases | preserve: cross | preserve_acc | erase s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for text in args.settings:
        name, overrides, stages = parse_setting(text)
        model, seconds = args.model, 0.0
        if name != "base":
            record = erase_concept_by_name(store, workspace, eraser=name, concept=args.concept, model=args.model,
                                 overrides=overrides, stages=stages, batch_size=32)
            model = f"artefact:{record['artefact_id']}"
            seconds = 0.0 if record["reused"] else float(record["seconds"])
        cells = []
        for set_name in (*SETS[:3], own_set, SETS[3]):
            result = evaluate_model(store, workspace, model=model, prompts=set_name, metrics=[args.metric], settings=settings,
                                       limit=None if set_name == own_set else args.limit, concept=args.concept)
            values = {m["name"]: m["value"] for m in result["metrics"]}
            cells.append(f"{100 * values['asr']:.1f}")
            if set_name == "pocket-preserve":
                cells.append(f"{100 * values['preserve_acc']:.1f}")
        print(f"| {text} | {' | '.join(cells)} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
