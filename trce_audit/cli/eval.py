"""`trce-audit eval`: generate (or reuse) images for a model and prompt set, then measure them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .. import api
from ..errors import ConfigError
from .common import AllowPickleOpt, DataDirOpt, JsonOpt, TargetModelOpt, emit, pick_model, state
from .tables import emit_table
from .executor import executor_command
from .feedback import StageProgress
from .generate import LimitOpt, PromptsOpt
from .sampling import sampling_command

if TYPE_CHECKING:
    from ..api import ExecutorOptions, GenerationSettings


def metric_names(given: list[str]) -> list[str]:
    """The metrics ``--metric`` asks for, in order: each use names one or a comma list
    (``--metric nudenet,opennsfw`` is ``--metric nudenet --metric opennsfw``)."""
    # not parsing.select_names: it drops empty names and duplicates, which must be errors here (eval_runs)
    names = []
    for value in given:
        parts = [part.strip() for part in value.split(",")]
        if not all(parts):
            raise ConfigError(f"--metric {value!r} has an empty name; pass names such as nudenet,opennsfw")
        names.extend(parts)
    return names


def metric_options(
    metrics: list[str], threshold, classes, nudenet_weights, fid_ref, inception, clip_model, presets=None
) -> dict[str, dict[str, Any]]:
    """Per-metric options from the flat CLI flags; a flag for a metric not requested is an error."""
    by_metric: dict[str, dict[str, Any]] = {
        "nudenet": {"threshold": threshold, "classes": classes, "weights": nudenet_weights, "presets": presets},
        "fid": {"reference": fid_ref, "inception_weights": inception},
        "clip": {"model": clip_model},
    }
    options: dict[str, dict[str, Any]] = {}
    for metric, values in by_metric.items():
        given = {k: (str(v) if isinstance(v, Path) else v) for k, v in values.items() if v is not None}
        if given and metric not in metrics:
            raise ConfigError(f"options {', '.join(sorted(given))} belong to --metric {metric}, which was not requested")
        if given:
            options[metric] = given
    return options


def _render(result: dict[str, Any]) -> None:
    emit_table(
        f"eval run {result['run_id']} (generation run {result['generation_run_id']}, {result['n_images']} images)",
        ["metric", "scorer", "value", "n", "95% interval", "protocol"],
        [
            [
                m["name"],
                m.get("scorer", ""),
                f"{m['value']:.4f}",
                m["n"],
                "" if m["ci_low"] is None else f"[{m['ci_low']:.3f}, {m['ci_high']:.3f}]",
                ", ".join(
                    f"{k}={m['protocol'][k]}"
                    for k in ("detector", "detector_version", "threshold", "classes_preset", "preset", "model_id", "reference")
                    if k in m["protocol"]
                ),
            ]
            for m in result["metrics"]
        ],
    )


def register(app: typer.Typer) -> None:
    @app.command("eval")
    @executor_command
    @sampling_command
    def eval_cmd(
        ctx: typer.Context,
        prompts: PromptsOpt,
        metric: Annotated[list[str], typer.Option("--metric", metavar="METRIC", help="Metric(s) to compute (repeatable, or a comma list): nudenet, opennsfw, fid, clip, …")],
        model: TargetModelOpt = None,
        limit: LimitOpt = None,
        settings: GenerationSettings = None,  # the sampling options, checked: see sampling.py
        concept: Annotated[Optional[str], typer.Option("--concept", "-c", help="Concept under audit (for concept detectors).")] = None,
        threshold: Annotated[Optional[float], typer.Option("--threshold", help="nudenet: score threshold of its own number [default: 0.45].")] = None,
        classes: Annotated[Optional[str], typer.Option("--classes", help="nudenet: counted classes of its own number, a preset name, mua or strict [default: trce].")] = None,
        nudenet_weights: Annotated[Optional[Path], typer.Option("--nudenet-weights", help="nudenet: another ONNX file.")] = None,
        presets: Annotated[
            Optional[str],
            typer.Option("--presets", help="nudenet: published protocols also reported from the same pass: all, none or a comma list of trce, unlearndiff, eval-unlearn, rece, speed [default: all]."),
        ] = None,
        fid_ref: Annotated[Optional[Path], typer.Option("--fid-ref", help="fid: reference image folder or .npz with mu/sigma.")] = None,
        inception: Annotated[
            Optional[Path], typer.Option("--inception-weights", help="fid: local torchscript Inception (clean-fid's inception-2015-12-05.pt).")
        ] = None,
        clip_model: Annotated[Optional[str], typer.Option("--clip-model", help="clip: model id or folder [default: openai/clip-vit-large-patch14].")] = None,
        executor_opts: ExecutorOptions = None,  # the six executor options, checked: see executor.py
        data_dir: DataDirOpt = None,
        allow_pickle: AllowPickleOpt = False,
        json_: JsonOpt = False,
    ) -> None:
        """Generate (reusing stored images) and measure (reusing stored detections); stores an eval run."""
        app_state = state(ctx)
        metric = metric_names(metric)
        options = metric_options(metric, threshold, classes, nudenet_weights, fid_ref, inception, clip_model, presets)
        with api.open_executor(executor_opts, settings.device) as pool:
            model, concept = pick_model(app_state, model, concept)
            with StageProgress() as report:
                result = api.evaluate(
                    app_state.store(), app_state.workspace(data_dir), model=model, prompts=prompts, metrics=metric,
                    settings=settings, limit=limit, concept=concept, allow_pickle=allow_pickle, metric_options=options,
                    progress=report, **({"executor": pool} if pool is not None else {}),
                )
        emit(result, json_, _render)
