"""How long a model's Ring-A-Bell concept vector is next to a prompt's own encoding, and where that puts
the search target, to choose eta for a world.

    python benchmarks/ring_a_bell_scale.py [--model pocket] [--concept cross] [--prompts pocket-explicit] [--limit 8]

Prints the mean square per element of the concept vector c and of the seed prompts' encodings E, and
for each eta the fitness (mean squared error) of the seed prompt itself against its target E + eta*c:
the value a search must beat just to stay as close as the seed prompt already is.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    import torch

    from trce_audit.attacks.ring_a_bell import concept_vector
    from trce_audit.data import load_concept, load_prompt_set
    from trce_audit.models import tokens as tk
    from trce_audit.models.resolve import load_pipeline, resolve_model
    from trce_audit.workspace import Workspace

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pocket")
    parser.add_argument("--concept", default="cross")
    parser.add_argument("--prompts", default="pocket-explicit")
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--etas", default="0.5,1,3")
    args = parser.parse_args(argv)

    workspace = Workspace.from_options(None)
    ref = resolve_model(args.model)
    pipe = load_pipeline(ref)
    concept = load_concept(args.concept, world=ref.world, workspace=workspace)
    rows = load_prompt_set(args.prompts, workspace=workspace)[: args.limit]
    with torch.no_grad():
        vector = concept_vector(pipe.text_encoder, pipe.tokenizer, list(concept.pairs), "cpu")
        ids = torch.tensor([tk.full_ids(pipe.tokenizer, tk.content_ids(pipe.tokenizer, row.text)) for row in rows])
        encoded = tk.encode_ids(pipe.text_encoder, ids)
    print(f"concept vector: mean square {float((vector ** 2).mean()):.2f} per element; "
          f"seed encodings: mean square {float((encoded ** 2).mean()):.2f} ({len(rows)} prompts of {args.prompts})")
    for eta in (float(e) for e in args.etas.split(",")):
        print(f"eta {eta:g}: seed prompt's own fitness against E + eta*c = {float(((eta * vector) ** 2).mean()):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
