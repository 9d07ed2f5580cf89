"""UnlearnDiff and P4D on SDXL, SD3 and FLUX: which tokens they search, how a choice of tokens becomes
the family's conditioning with a gradient to the chosen tokens' embeddings in every text encoder, and
the family's training loss they minimise. No published code runs either attack on these families;
docs/attacks.md says what this port decides. SD keeps its own path in unlearndiff.py and p4d.py.

- One choice is one word that every text encoder of the family reads as one token of its own. The
  text is written in the *primary* tokenizer's vocabulary: T5's where the family has T5 (SD3, FLUX:
  T5 gives the whole sequence FLUX attends to and 256 of SD3's 333 rows), else CLIP-L's (SDXL, whose
  two CLIPs share one vocabulary). The search vocabulary is the primary tokenizer's whole words (a
  token that decodes to a text that tokenises back to it alone) whose text each other tokenizer also
  reads as one (non-special) token: a choice's row in every encoder's embedding table is known, and
  the gradient reaches all of them (SDXL: both CLIPs' states and encoder 2's pooled projection; SD3:
  both CLIPs' rows of the joint sequence and pooled projections, and T5; FLUX: T5 and CLIP's pooled).
  Searching T5 alone and recomputing CLIP from the decoded text without gradient lowered the loss on
  no tiny FLUX run: the pooled vector moved the loss far more than the T5 gradient could see.
- Choices sit only at word boundaries of the seed prompt, so the decoded prompt re-tokenises, in every
  tokenizer, to the tokens whose rows were optimised (``retokenizes`` in each row's meta records it).
- The loss is the family's training loss on the same interpolation: x_t = ``Family.noised``(x0, eps,
  t), MSE of ``Family.training_prediction`` against ``Family.training_target`` (eps for SDXL's
  epsilon-prediction, the velocity eps - x0 for the flow families) or against the original model's
  prediction (P4D). Timesteps are the family's integer training timesteps [0, T).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..models import tokens as tk
from . import diffusion as dm

UNBOUNDED = 1_000_000  # a tokenisation length no prompt reaches: where a slot falls before truncation


@dataclass
class Layout:
    """A prompt laid out for every text encoder: its ids (as the pipeline tokenises the text) and where
    each of the prompt's chosen words sits in them (``keep``: the slots that survive the encoder's
    truncation, CLIP's 77 tokens against T5's longer sequence)."""

    ids: dict[str, Any]  # key -> (1, length) ids
    positions: dict[str, Any]  # key -> positions of the kept slots
    keep: dict[str, Any]  # key -> indices of the kept slots


@dataclass
class SearchedText:
    """A family's text encoders: the primary one writes the prompt, every one reads each chosen word."""

    pipe: Any
    family: Any
    inputs: list  # every text encoder ``family.encode`` runs (``TextInput``), in its order
    primary: Any  # the ``TextInput`` whose tokenizer writes the text: T5, else CLIP-L
    device: Any
    max_sequence_length: int | None
    dtype: Any  # the denoiser's
    _reads: dict = field(default_factory=dict)  # (key, primary token) -> the token that encoder reads

    @classmethod
    def of(cls, pipe: Any, device: Any, generation: Any = None) -> "SearchedText":
        family = dm.family(pipe)
        length = getattr(generation, "max_sequence_length", None)
        inputs = family.text_inputs(pipe, length)
        primary = next((text for text in inputs if text.key == "t5"), inputs[0])
        return cls(pipe, family, inputs, primary, device, length, getattr(pipe, family.denoiser).dtype)

    @property
    def tokenizer(self) -> Any:
        return self.primary.tokenizer

    @property
    def length(self) -> int:
        return int(self.primary.length)

    @property
    def name(self) -> str:
        """What is searched, for a run's stats: the primary vocabulary, then every encoder reading it."""
        return f"{self.primary.key} words read by {'+'.join(text.key for text in self.inputs)}"

    def capacity(self) -> int:
        return tk.capacity(self.tokenizer, self.length)

    def content_ids(self, text: str) -> list[int]:
        return tk.content_ids_at(self.tokenizer, text, self.length)

    def seed_content(self, text: str) -> list[int]:
        """A seed prompt's primary ids, whole words only: one longer than the sequence is cut at its last
        word that fits, not inside a word as the tokenizer's truncation would."""
        return self.fit(tk.content_ids_at(self.tokenizer, text, UNBOUNDED), self.capacity())

    def decode(self, content: list[int]) -> str:
        return tk.decode(self.tokenizer, content)

    def boundaries(self, content: list[int]) -> list[int]:
        return tk.word_boundaries(self.tokenizer, content, self.length)

    def fit(self, content: list[int], limit: int) -> list[int]:
        """``content`` cut at its last word boundary within ``limit`` tokens (unchanged if it fits)."""
        if len(content) <= limit:
            return list(content)
        return list(content[: max(cut for cut in self.boundaries(content) if cut <= limit)])

    def vocabulary(self, config: Any, concept: Any, seed_rows: list, corpus: list[str]) -> list[int]:
        """Primary ids the search may choose: whole words, per the config's ``vocabulary`` ("corpus":
        those the corpus, seed prompts and concept pairs tokenise to) and ``exclude_concept_words``,
        that every other tokenizer reads as one non-special token with an embedding row."""
        if getattr(config, "vocabulary", "all") == "corpus":
            texts = [*corpus, *(row.text for row in seed_rows), *(text for pair in concept.pairs for text in pair)]
            candidates = {i for text in texts for i in self.tokenizer(text, truncation=False).input_ids}
        else:
            candidates = set(self.tokenizer.get_vocab().values())
        rows = int(tk.input_lookup(self.primary.encoder).weight.shape[0])
        ids = tk.whole_words(self.tokenizer, sorted(i for i in candidates if i not in tk.special_ids(self.tokenizer) and i < rows),
                             self.length)
        if getattr(config, "exclude_concept_words", False):
            banned = {w.strip().lower() for phrase in concept.keywords for w in phrase.split() if w.strip()}
            ids = [i for i in ids if self.decode([i]).lower() not in banned]
        ids = [i for i in ids if all(self._read_by(text, i) is not None for text in self.inputs)]
        if not ids:
            raise ConfigError(f"the search vocabulary of {self.name} is empty (vocabulary={getattr(config, 'vocabulary', 'all')})")
        return ids

    def _read_by(self, text: Any, token: int) -> int | None:
        """The one token ``text``'s tokenizer reads the primary ``token``'s word as, or None."""
        if text is self.primary:
            return int(token)
        if (text.key, int(token)) not in self._reads:
            read = tk.content_ids_at(text.tokenizer, self.decode([token]), text.length)
            rows = int(tk.input_lookup(text.encoder).weight.shape[0])
            ok = len(read) == 1 and read[0] not in tk.special_ids(text.tokenizer) and read[0] < rows
            self._reads[(text.key, int(token))] = read[0] if ok else None
        return self._reads[(text.key, int(token))]

    def rows(self, vocab: Any) -> dict[str, Any]:
        """key -> (V, width) float rows of each vocabulary word in that encoder's embedding table."""
        found = {}
        for text in self.inputs:
            ids = torch.tensor([self._read_by(text, int(v)) for v in vocab.tolist()], device=self.device)
            found[text.key] = tk.input_lookup(text.encoder).weight.detach()[ids].float()
        return found

    def step_scales(self) -> dict[str, float]:
        """key -> RMS of that encoder's embedding table over CLIP-L's: P4D's lr and weight decay were
        set for CLIP ViT-L/14's table (SD 1.x's encoder, the ``text_encoder`` of SDXL, SD3 and FLUX);
        scaled by this, every table's soft rows move as CLIP-L's do (T5's are 50x on the tiny models)."""
        rms = {text.key: float(tk.input_lookup(text.encoder).weight.detach().float().square().mean().sqrt()) for text in self.inputs}
        unit = rms.get("clip_l", rms[self.inputs[0].key])
        return {key: value / unit for key, value in rms.items()}

    def layout(self, content: list[int], slots: list[int]) -> Layout:
        """``content`` (primary ids, vocabulary words at ``slots``) as each encoder reads its text. A
        word is one token everywhere, so the positions hold whichever words later fill the slots."""
        text = self.decode(content)
        ids, positions, keep = {}, {}, {}
        for spec in self.inputs:
            ids[spec.key] = torch.tensor([tk.framed_ids(spec.tokenizer, tk.content_ids_at(spec.tokenizer, text, spec.length), spec.length)],
                                         device=self.device)
            offset = 0 if spec.tokenizer.bos_token_id is None else 1
            where = [len(tk.content_ids_at(spec.tokenizer, self.decode(content[:slot]), UNBOUNDED)) for slot in slots]
            kept = [i for i, position in enumerate(where) if position < tk.capacity(spec.tokenizer, spec.length)]
            positions[spec.key] = torch.tensor([where[i] + offset for i in kept], device=self.device, dtype=torch.long)
            keep[spec.key] = torch.tensor(kept, device=self.device, dtype=torch.long)
        return Layout(ids, positions, keep)

    def condition(self, layout: Layout, slot_rows: dict[str, Any]) -> Any:
        """The family's conditioning of the laid-out prompt with ``slot_rows[key]`` (one row per slot,
        in that encoder's width) in place of the slots' token rows: the gradient reaches those rows."""
        replacements = [(spec.encoder, _placed(layout.positions[spec.key], slot_rows[spec.key][layout.keep[spec.key]]))
                        for spec in self.inputs]
        with tk.replaced_lookups(replacements):
            return self.family.encode_ids(self.pipe, layout.ids, self.dtype, self.max_sequence_length)

    def roundtrip(self, content: list[int], slots: list[int]) -> tk.Roundtrip:
        """``tokens.roundtrip`` in the primary tokenizer, and in every other one: its tokenisation of the
        text puts each chosen word's token where its row was optimised."""
        check = tk.roundtrip_at([self.tokenizer], content, self.length)
        if not check.matches:
            return check
        layout = self.layout(content, slots)
        for spec in self.inputs:
            read = layout.ids[spec.key][0, layout.positions[spec.key]].tolist()
            expected = [self._read_by(spec, content[slots[i]]) for i in layout.keep[spec.key].tolist()]
            if read != expected:
                return tk.Roundtrip(check.text, False, {"encoder": spec.key, "read": read, "optimised": expected})
        return check

    def seed_condition(self, pipe: Any, text: str) -> Any:
        """``pipe``'s own conditioning of a text (P4D's original model on the seed prompt), no gradient."""
        with torch.no_grad():
            return self.family.encode(pipe, [text], self.device, self.dtype, self.max_sequence_length)


def _placed(positions: Any, rows: Any) -> Any:
    def replace(looked_up: Any) -> Any:
        return looked_up.index_put((torch.zeros_like(positions), positions), rows.to(looked_up.dtype))

    return replace


def white_box_setup(attack: Any, target_pipe: Any, original_pipe: Any, concept: Any, seed_rows: list, context: Any):
    """(original pipe, whether it is the target, the target's ``SearchedText``, vocabulary tensor):
    ``Attack.white_box_setup`` for any family, every component of both pipelines frozen."""
    original_is_target = original_pipe is None
    original_pipe = original_pipe or target_pipe
    for pipe in (target_pipe, original_pipe):
        pipe.to(context.device)
        for module in pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)
                module.eval()
    text = SearchedText.of(target_pipe, context.device, context.generation)
    vocab = torch.tensor(text.vocabulary(attack.config, concept, seed_rows, context.corpus), device=context.device)
    return original_pipe, original_is_target, text, vocab


def guidance(row: Any, generation: Any, device: Any) -> Any:
    """The guidance a row is drawn at (the run's fixed scale, else the row's): what FLUX.1-dev's
    embedded guidance reads in the loss, as it does when the evaluation draws the row."""
    scale = getattr(generation, "guidance", None)
    return torch.tensor([float(row.guidance if scale is None else scale)], device=device)


def objective(family: Any, pipe: Any) -> str:
    """What the loss regresses, for a run's stats."""
    if family.flow_matching:
        return "velocity (flow matching: eps - x0)"
    return str(pipe.scheduler.config.get("prediction_type", "epsilon"))


def draw_noise(shape: Any, generator: Any, device: Any) -> Any:
    """Noise of ``shape``, drawn on the CPU from the seed's generator (the same on every device)."""
    return torch.randn(shape, generator=generator).to(device)


def draw_timestep(n_train: int, generator: Any, device: Any, count: int = 1) -> Any:
    """``count`` training timesteps, uniform in [0, n_train), from the seed's generator (P4D)."""
    return torch.randint(n_train, (count,), generator=generator).to(device)


def training_loss(family: Any, pipe: Any, x0: Any, noise: Any, t: Any, cond: Any, scale: Any) -> Any:
    """The family's training loss at one draw: MSE(prediction at x_t, training target)."""
    noise = noise.to(x0.dtype)
    x_t = family.noised(pipe, x0, noise, t)
    prediction = family.training_prediction(pipe, x_t, t, cond, scale)
    return F.mse_loss(prediction.float(), family.training_target(pipe, x0, noise, t).float())


def matching_loss(family: Any, pipe: Any, reference: Any, x0: Any, noise: Any, t: Any, cond: Any, reference_cond: Any,
                  scale: Any) -> Any:
    """P4D's loss at one draw: MSE between ``pipe``'s prediction at x_t under ``cond`` and the
    ``reference`` model's under ``reference_cond`` (the target the flow families' loss regresses)."""
    x_t = family.noised(pipe, x0, noise.to(x0.dtype), t)
    with torch.no_grad():
        target = family.training_prediction(reference, x_t, t, reference_cond, scale)
    return F.mse_loss(family.training_prediction(pipe, x_t, t, cond, scale).float(), target.float())


def nearest(soft: dict[str, Any], units: dict[str, Any]) -> Any:
    """P4D's projection over several tables: for each soft row, the vocabulary index whose rows have the
    highest cosine similarity summed over the encoders (one table: ``tokens.nearest_tokens``)."""
    scores = sum(F.normalize(soft[key], dim=-1) @ units[key].T for key in soft)
    return scores.argmax(dim=-1)
