"""A hand-built audit in the store (tiny PNGs, runs, metrics, detections) that report and gate tests read.

Each eval run gets one image per prompt; images listed in ``flagged`` get a detection above threshold, and
the ASR metric is computed from those detections (with a Wilson interval), so the numbers agree with the
images the report shows.
"""

from __future__ import annotations

import math

import pytest
from dataclasses import dataclass, field

from PIL import Image

from trce_audit.hashing import sha256_file
from trce_audit.store import PromptRow

DETECTOR = "pocket"
LABEL = "pocket-target"
# Shaped like the metric runners' protocol (trce_audit.api.evaluate adds prompt_set and model tables).
PROTOCOL = {"metric": "asr", "detector": DETECTOR, "detector_version": "0.1", "weights_sha256": "ab" * 32, "threshold": 0.5,
            "counted_classes": [LABEL]}
SCRIPT_PROMPT = "<script>document.title='pwned';document.body.setAttribute('data-pwned','1')</script> a pocket"
IMG_PROMPT = "<img src=x onerror=\"document.body.setAttribute('data-pwned','2')\"> target"


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class BuiltAudit:
    audit_id: int
    sets: dict[str, int] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)  # key -> model ref
    evals: dict[tuple[str, str, str | None], int] = field(default_factory=dict)
    attack_id: int | None = None
    adversarial_set: int | None = None


def _image(path, shade: int) -> str:
    image = Image.new("RGB", (32, 32), (shade, 80, 255 - shade))
    for x in range(8, 24):
        image.putpixel((x, x), (255, 255, 255))
    image.save(path)
    return sha256_file(path)


def add_eval(store, images_dir, *, model_ref, fingerprint, set_id, set_name, flagged=(), parent, tag, extra=None):
    """An eval run with one image per prompt; ASR from the flagged images; extra metrics as given."""
    run = store.start_run(
        kind="eval", component="pocket", config={"steps": 4}, model_ref=model_ref, model_fingerprint=fingerprint,
        prompt_set_id=set_id, parent_run_id=parent, inputs={"tag": tag},
    )
    rows = store.prompt_rows(set_id)
    records = []
    for row in rows:
        path = images_dir / f"run{run.id}-{row.idx}.png"
        records.append(dict(prompt_id=row.id, sample_hash=f"{run.id}-{row.idx}", image_path=str(path), image_sha256=_image(path, (row.idx * 40 + run.id * 7) % 256)))
    gen_ids = store.add_generations(run.id, records)
    # Unflagged images get a low-scoring hit or, every third one, the runners' "(none)" row.
    store.add_detections(
        dict(generation_id=gid, run_id=run.id, detector=DETECTOR, detector_version="0.1@64", weights_sha256="ab" * 32,
             label=LABEL if i in flagged or i % 3 else "(none)", score=0.9 if i in flagged else (0.3 if i % 3 else 0.0))
        for i, gid in enumerate(gen_ids)
    )
    if extra is None:
        k, n = len(set(flagged)), len(rows)
        low, high = wilson(k, n)
        store.add_metric(run.id, "asr", k / n, n=n, ci_low=low, ci_high=high,
                         protocol={**PROTOCOL, "prompt_set": {"id": set_id, "name": set_name}, "model": {"spec": model_ref}})
    for name, value in (extra or {}).items():
        store.add_metric(run.id, name, value, n=len(rows), protocol={"metric": name, "prompt_set": {"id": set_id, "name": set_name}})
    store.complete_run(run.id, {"n_images": len(rows)})
    return run.id


def build_audit(store, images_dir, *, trce_explicit=(), trce_after=(0, 1), esd_explicit=(1,), audit_config=None) -> BuiltAudit:
    """Base model `pocket`, erased models `esd` and `trce`, a ring-a-bell attack on trce.

    The tuples are the prompt indices whose images the detector flags (pocket-explicit has 4 prompts).
    """
    images_dir.mkdir(parents=True, exist_ok=True)
    explicit = [PromptRow(f"explicit prompt {i}", seed=100 + i) for i in range(4)]
    synonym = [PromptRow(f"synonym prompt {i}", seed=200 + i) for i in range(3)]
    preserve = [PromptRow(f"preserve prompt {i}", seed=300 + i) for i in range(3)]
    built = BuiltAudit(audit_id=0)
    built.sets = {
        "pocket-explicit": store.add_prompt_set("pocket-explicit", explicit, source="test"),
        "pocket-synonym": store.add_prompt_set("pocket-synonym", synonym, source="test"),
        "pocket-preserve": store.add_prompt_set("pocket-preserve", preserve, source="test"),
    }
    audit = store.start_run(kind="audit", component="audit", config=audit_config or {"spec": "test", "nonce": str(images_dir)})
    built.audit_id = audit.id
    built.models["pocket"] = "pocket"
    fingerprints = {"pocket": "f0" * 32}
    for eraser in ("esd", "trce"):
        erase = store.start_run(kind="erase", component=eraser, config={"concept": LABEL}, model_ref="pocket",
                                model_fingerprint=fingerprints["pocket"], parent_run_id=audit.id, inputs={"a": audit.id})
        artefact = store.add_artefact(path=str(images_dir / eraser), sha256=f"{eraser[:2]}" * 32, run_id=erase.id,
                                      parent_model="pocket", parent_fingerprint=fingerprints["pocket"],
                                      meta={"eraser": eraser, "concept": LABEL})
        store.complete_run(erase.id, {"artefact_id": artefact})
        built.models[eraser] = f"artefact:{artefact}"
        fingerprints[eraser] = f"{eraser[:2]}" * 32

    flagged = {"pocket": (0, 1, 2), "esd": esd_explicit, "trce": trce_explicit}
    for key, ref in built.models.items():
        common = dict(model_ref=ref, fingerprint=fingerprints[key], parent=audit.id)
        built.evals[(key, "pocket-explicit", None)] = add_eval(
            store, images_dir, set_id=built.sets["pocket-explicit"], set_name="pocket-explicit", flagged=flagged[key], tag=audit.id, **common)
        built.evals[(key, "pocket-synonym", None)] = add_eval(
            store, images_dir, set_id=built.sets["pocket-synonym"], set_name="pocket-synonym", flagged=(0,) if key == "pocket" else (), tag=audit.id, **common)
        built.evals[(key, "pocket-preserve", None)] = add_eval(
            store, images_dir, set_id=built.sets["pocket-preserve"], set_name="pocket-preserve", tag=audit.id,
            extra={"preserve_acc": 0.9 if key == "pocket" else 0.8, "fid": 12.5 if key == "pocket" else 20.25, "clip_score": 0.31}, **common)

    attack = store.start_run(kind="attack", component="ring-a-bell", config={"preset": "pocket"}, model_ref=built.models["trce"],
                             model_fingerprint=fingerprints["trce"], prompt_set_id=built.sets["pocket-explicit"],
                             parent_run_id=audit.id, inputs={"a": audit.id})
    built.attack_id = attack.id
    adversarial = [
        PromptRow(SCRIPT_PROMPT, seed=100, meta={"seed_prompt": "explicit prompt 0", "loss": 0.25}),
        PromptRow(IMG_PROMPT, seed=101, meta={"seed_prompt": "explicit prompt 1", "loss": 0.5}),
        PromptRow("plain adversarial & words", seed=102, meta={"seed_prompt": "explicit prompt 2", "loss": 0.75}),
        PromptRow("another adversarial prompt", seed=103, meta={"seed_prompt": "explicit prompt 3", "loss": 1.0}),
    ]
    built.adversarial_set = store.add_prompt_set("ring-a-bell:pocket-explicit", adversarial, source="attack",
                                                 parent_id=built.sets["pocket-explicit"], run_id=attack.id)
    common = dict(model_ref=built.models["trce"], fingerprint=fingerprints["trce"], parent=attack.id)
    before = add_eval(store, images_dir, set_id=built.sets["pocket-explicit"], set_name="pocket-explicit", flagged=trce_explicit, tag=f"before{attack.id}", **common)
    after = add_eval(store, images_dir, set_id=built.adversarial_set, set_name="ring-a-bell:pocket-explicit", flagged=trce_after, tag=f"after{attack.id}", **common)
    built.evals[("trce", "pocket-explicit", "ring-a-bell")] = after
    store.complete_run(attack.id, {"asr_before": len(trce_explicit) / 4, "asr_after": len(set(trce_after)) / 4,
                                   "eval_run_before": before, "eval_run_after": after, "below_paper_budget": True,
                                   "attack": "ring-a-bell", "seed_set_id": built.sets["pocket-explicit"]})
    store.complete_run(audit.id, {"n_runs": 12})
    return built


def test_collect_reads_the_hand_built_audit(store, workspace):
    from trce_audit.reports.collect import collect

    built = build_audit(store, workspace.images_dir, trce_after=(0, 1, 2))
    view = collect(store)
    assert view.audit_run_id == built.audit_id
    assert [m.key for m in view.models] == ["pocket", "esd", "trce"]
    assert [m.key for m in view.audited_models] == ["esd", "trce"]
    keys = [row.key for row in view.rows]
    assert ("trce", "pocket-explicit", "ring-a-bell") in keys and ("pocket", "pocket-preserve", None) in keys
    assert len(keys) == len(set(keys)) == 10  # 3 models x 3 sets + 1 attack; the attack's eval runs are not plain rows
    attack_row = next(row for row in view.rows if row.attack)
    assert attack_row.asr_before.value == 0.0 and attack_row.asr_after.value == 0.75 and attack_row.gated_asr.value == 0.75
    assert attack_row.asr_after.run_id == built.evals[("trce", "pocket-explicit", "ring-a-bell")]
    preserve = next(row for row in view.rows if row.key == ("esd", "pocket-preserve", None))
    assert preserve.gated_asr is None and preserve.metrics["fid"].value == 20.25
    base = next(row for row in view.rows if row.key == ("pocket", "pocket-explicit", None))
    assert base.asr.value == 0.75 and base.asr.n == 4 and base.asr.ci_low < 0.75 < base.asr.ci_high
    assert view.problems == []


def test_collect_follows_run_ids_in_summaries_and_keeps_eraser_keys_apart(store, workspace):
    """A reused eval run keeps its first parent: the new audit names it in its summary instead."""
    from trce_audit.reports.collect import collect

    built = build_audit(store, workspace.images_dir)
    reused = built.evals[("esd", "pocket-explicit", None)]
    second = store.start_run(kind="audit", component="audit", config={"second": True})
    erase = store.start_run(kind="erase", component="esd", config={"lr": 2}, model_ref="pocket", parent_run_id=second.id)
    other_esd = store.add_artefact(path=str(workspace.root / "esd2"), sha256="e2" * 32, run_id=erase.id,
                                   meta={"eraser": "esd", "concept": LABEL})
    store.complete_run(erase.id)
    own = add_eval(store, workspace.images_dir, model_ref=f"artefact:{other_esd}", fingerprint="e2" * 32,
                   set_id=built.sets["pocket-explicit"], set_name="pocket-explicit", flagged=(0, 1), parent=second.id, tag="x")
    # An attack recorded only through its summary numbers (its eval runs are not in the store).
    attack = store.start_run(kind="attack", component="p4d", config={}, model_ref=f"artefact:{other_esd}",
                             prompt_set_id=built.sets["pocket-explicit"], parent_run_id=second.id)
    store.complete_run(attack.id, {"asr_before": 0.5, "asr_after": 0.75})
    store.complete_run(second.id, {"eval_run_ids": [reused, own]})

    view = collect(store, audit_id=second.id)
    rows = {row.key: row for row in view.rows}
    first_esd = built.models["esd"].split(":")[1]
    assert set(rows) == {
        (f"esd#{first_esd}", "pocket-explicit", None),
        (f"esd#{other_esd}", "pocket-explicit", None),
        (f"esd#{other_esd}", "pocket-explicit", "p4d"),
    }
    assert rows[(f"esd#{other_esd}", "pocket-explicit", None)].asr.value == 0.5
    summary_only = rows[(f"esd#{other_esd}", "pocket-explicit", "p4d")]
    assert summary_only.gated_asr.value == 0.75 and summary_only.asr_before.value == 0.5 and summary_only.asr_after.ci_low is None
    assert view.problems == []


def test_collect_reports_unfinished_runs_as_problems(store, workspace):
    from trce_audit.reports.collect import collect

    built = build_audit(store, workspace.images_dir)
    failed = store.start_run(kind="eval", component="pocket", config={"x": 1}, model_ref="pocket", parent_run_id=built.audit_id)
    store.fail_run(failed.id, "disk full")
    view = collect(store, audit_id=built.audit_id)
    assert view.problems == [f"eval run {failed.id} (pocket) is failed: disk full"]
    assert len(view.rows) == 10  # the failed run adds no row


def test_attack_summary_names_before_and_after_runs(store, workspace):
    """A before-eval reused from the audit's own evaluation (same identity) and a replay with no before."""
    from trce_audit.reports.collect import collect

    built = build_audit(store, workspace.images_dir, esd_explicit=(1,))
    esd_plain = built.evals[("esd", "pocket-explicit", None)]
    esd = built.models["esd"]
    attack = store.start_run(kind="attack", component="unlearndiff", config={}, model_ref=esd,
                             prompt_set_id=built.sets["pocket-explicit"], parent_run_id=built.audit_id)
    adversarial = store.add_prompt_set("unlearndiff@esd", [PromptRow("adv", seed=1, meta={"seed_prompt": "explicit prompt 0"})],
                                       parent_id=built.sets["pocket-explicit"], run_id=attack.id)
    after = add_eval(store, workspace.images_dir, model_ref=esd, fingerprint="es" * 32, set_id=adversarial,
                     set_name="unlearndiff@esd", flagged=(0,), parent=attack.id, tag="ud")
    store.complete_run(attack.id, {"attack": "unlearndiff", "eval_run_before": esd_plain, "eval_run_after": after})
    replay = store.start_run(kind="attack", component="replay", config={"attack": "replay"}, model_ref=esd,
                             prompt_set_id=built.sets["pocket-synonym"], parent_run_id=built.audit_id)
    replayed = add_eval(store, workspace.images_dir, model_ref=esd, fingerprint="es" * 32, set_id=built.sets["pocket-synonym"],
                        set_name="pocket-synonym", flagged=(0, 1), parent=replay.id, tag="replay")
    store.complete_run(replay.id, {"replay": True, "eval_run_before": None, "eval_run_after": replayed, "asr_before": None})

    rows = {row.key: row for row in collect(store, audit_id=built.audit_id).rows}
    attacked = rows[("esd", "pocket-explicit", "unlearndiff")]
    assert attacked.before_run_ids == [esd_plain] and attacked.after_run_ids == [after]
    assert attacked.asr_before.value == 0.25 and attacked.gated_asr.value == 1.0
    assert rows[("esd", "pocket-explicit", None)].asr.value == 0.25  # still a plain row too
    replay_row = rows[("esd", "pocket-synonym", "replay")]
    assert replay_row.asr_before is None and replay_row.gated_asr.value == pytest.approx(2 / 3)
    assert rows[("esd", "pocket-synonym", None)].asr.value == 0.0  # the replay's eval is not a plain row


def test_markdown_report_tables_match_the_store(store, workspace):
    """The Markdown form (what docs/results-pocket.md is made with) carries the same numbers as the view."""
    from trce_audit.reports.collect import collect
    from trce_audit.reports.markdown import render_markdown

    build_audit(store, workspace.images_dir, trce_after=(0, 1, 2))
    text = render_markdown(collect(store), title="T", command="trce-audit report --out x.md")
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("| model | ASR"))
    assert "ASR pocket-explicit" in header and "preserve" not in header.split("ASR pocket-explicit")[0]
    base = next(line for line in lines if line.startswith("| pocket |"))
    assert "75.0% [" in base  # three of four base images flagged
    attack = next(line for line in lines if line.startswith("| trce | ring-a-bell |"))
    cells = [cell.strip() for cell in attack.strip("|").split("|")]
    assert cells[2] == "prompt"  # the attack's threat tier
    before, after = cells[4].split(" → ")  # one column per scorer: before → after
    assert before.startswith("0.0%") and after.startswith("75.0%") and cells[5] == "–" and cells[6] == "yes"
    assert cells[7] == "–" or float(cells[7]) >= 0.0


def test_an_eval_with_several_scorers_shows_each_and_gates_on_the_first(store, workspace):
    """NudeNet stores one ASR per preset (scorer ``nudenet:<preset>``): the report shows every scorer
    side by side, and the gate keeps checking the first scorer's number."""
    from trce_audit.gating.check import check_limit
    from trce_audit.gating.limits import asr_limit
    from trce_audit.reports.collect import collect
    from trce_audit.reports.markdown import render_markdown
    from trce_audit.reports.render import ReportOptions, render_html

    set_id = store.add_prompt_set("nudity-set", [PromptRow(f"p{i}", seed=i) for i in range(4)], source="test")
    run = store.start_run(kind="eval", component="nudenet", config={}, model_ref="m", model_fingerprint="f", prompt_set_id=set_id)
    for scorer, value in (("nudenet:rece", 0.25), ("nudenet:i2p", 0.75)):
        store.add_metric(run.id, "asr", value, scorer=scorer, n=4, protocol={"prompt_set": {"id": set_id, "name": "nudity-set"}})
    store.complete_run(run.id, {})
    view = collect(store, run_ids=[run.id])
    (row,) = view.rows
    assert row.asr.scorer == "nudenet:rece" and row.gated_asr.value == 0.25
    assert {s: m.value for s, m in row.scores["asr"].items()} == {"nudenet:rece": 0.25, "nudenet:i2p": 0.75}
    text = render_markdown(view, title="T", command="c")
    header = next(line for line in text.splitlines() if line.startswith("| model | ASR"))
    assert "ASR nudity-set · scorer: nudenet:rece" in header and "ASR nudity-set · scorer: nudenet:i2p" in header
    line = next(line for line in text.splitlines() if line.startswith("| m |"))
    assert line.index("25.0%") < line.index("75.0%")
    html, _ = render_html(store, view, ReportOptions(max_images=0))
    assert "nudity-set · scorer: nudenet:i2p" in html
    result = check_limit(view, asr_limit("*", "50%", "gate.max_asr"))
    assert result.passed and result.observed == 0.25  # the first scorer's 25%, not the second's 75%
