"""The batched engine: batch-size invariance, per-row guidance, resume after kill -9, reuse by sample hash."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tolerance import assert_paths_agree
from trce_audit.store import PromptRow

REPO = Path(__file__).resolve().parents[1]
GUIDANCES = (7.5, 1.0, 3.0, 12.0)


def rows(n: int) -> list[PromptRow]:
    return [PromptRow(f"a photo of object {i}", seed=1000 + i, guidance=GUIDANCES[i % 4]) for i in range(n)]


@pytest.fixture(scope="module")
def tiny_pipe():
    import torch

    torch.set_num_threads(2)
    from trce_audit.models.tiny import build_pipeline

    return build_pipeline("tiny", seed=0)


def sampler(pipe, scheduler=None, steps=2, dtype="fp32"):
    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.engine import BatchSampler

    return BatchSampler(pipe, GenerationSettings(steps=steps, height=32, width=32, scheduler=scheduler, dtype=dtype).validate())


@pytest.mark.parametrize("scheduler", [None, "euler-a"])  # DDIM (deterministic) and an ancestral sampler
def test_image_does_not_depend_on_its_batch(tiny_pipe, scheduler):
    import torch

    prompts = rows(4)
    engine = sampler(tiny_pipe, scheduler)
    # Each row's noise comes from its own generator: exactly the same whatever the batch.
    noise = engine.initial_latents(prompts, engine.generators(prompts), 1.0)
    for i, row in enumerate(prompts):
        assert torch.equal(noise[i : i + 1], engine.initial_latents([row], engine.generators([row]), 1.0))

    # CPU kernels block their sums by batch shape; in float64 the two paths agree to the rounding
    # bound, which a per-row seed or guidance mix-up (latents moved by their own size) exceeds by 1e10.
    # terms: the UNet's widest convolution (3x3 over 128 channels); gain: each step's guidance.
    fp64 = sampler(copy.deepcopy(tiny_pipe).to(torch.float64), scheduler, dtype="fp64")
    assert_paths_agree(fp64.denoise(prompts), torch.cat([fp64.denoise([row]) for row in prompts]),
                       terms=1152, gain=fp64.settings.steps * max(GUIDANCES))
    # In float32, what users draw, the same rounding moves a decoded pixel by at most one level.
    batched = engine.denoise(prompts)
    single = torch.cat([engine.denoise([row]) for row in prompts])
    images_batched, images_single = engine.decode(batched), engine.decode(single)
    assert images_batched.shape == (4, 32, 32, 3) and images_batched.dtype == np.uint8
    difference = np.abs(images_batched.astype(int) - images_single.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.005
    # Different seeds and guidance give different images (the comparisons above are not vacuous).
    assert np.abs(images_batched[0].astype(int) - images_batched[1].astype(int)).mean() > 5


def test_rows_match_the_diffusers_pipeline_with_their_own_guidance(tiny_pipe):
    import torch

    engine = sampler(tiny_pipe, steps=2)
    prompts = [PromptRow("a red cube", seed=7, guidance=6.0), PromptRow("a blue ball", seed=8, guidance=1.0)]
    for row in prompts:
        reference = tiny_pipe(
            row.text, num_inference_steps=2, guidance_scale=row.guidance, height=32, width=32,
            generator=torch.Generator().manual_seed(row.seed), output_type="np",
        ).images[0]
        # Same batch shape (one row) as the pipeline call: the very same pixels.
        assert np.array_equal((reference * 255).round().astype(np.uint8), engine.sample([row])[0])


def test_settings_identity_leaves_out_runtime_options(tmp_path):
    from trce_audit.errors import ConfigError
    from trce_audit.generation import GenerationSettings
    from trce_audit.generation.runner import sample_hash

    a = GenerationSettings(steps=5, batch_size=1, device="cpu").pixel_config()
    b = GenerationSettings(steps=5, batch_size=16, device="cuda").pixel_config()
    assert a == b and "batch_size" not in a
    assert GenerationSettings(steps=6).pixel_config() != GenerationSettings(steps=5).pixel_config()
    row = PromptRow("a lamp", seed=3, guidance=7.5)
    assert sample_hash(row, a, "model-a") == sample_hash(PromptRow("a lamp", 3, 7.5, meta={"x": 1}), b, "model-a")
    for other in (
        sample_hash(row, GenerationSettings(steps=6).pixel_config(), "model-a"),
        sample_hash(row, a, "model-b"),
        sample_hash(PromptRow("a lamp", seed=4), a, "model-a"),
        sample_hash(PromptRow("a lamp", seed=3, guidance=5.0), a, "model-a"),
    ):
        assert other != sample_hash(row, a, "model-a")
    for bad in (dict(steps=0), dict(height=30), dict(dtype="fp8"), dict(scheduler="magic"), dict(device="tpu")):
        with pytest.raises(ConfigError):
            GenerationSettings(**bad).validate()


def test_generate_resumes_and_reuses_stored_samples(store, workspace, tiny_sd_dir):
    from trce_audit.api import generate
    from trce_audit.generation import GenerationSettings

    set_id = store.add_prompt_set("six", rows(6))
    settings = GenerationSettings(steps=2, height=32, width=32, batch_size=4)
    first = generate(store, workspace, model=str(tiny_sd_dir), prompts=set_id, settings=settings)
    assert (first["n_images"], first["generated"], first["reused"]) == (6, 6, 0)
    images = store.generations(first["run_id"])
    assert len({g.prompt_id for g in images}) == 6
    for g in images:
        assert Path(g.image_path).is_file() and Path(g.image_path).suffix == ".png"
        assert Path(g.image_path).parent.parent == workspace.images_dir

    # Another batch size and device string are the same run: nothing is generated again.
    again = generate(
        store, workspace, model=str(tiny_sd_dir), prompts=f"set:{set_id}",
        settings=GenerationSettings(steps=2, height=32, width=32, batch_size=1),
    )
    assert again["run_id"] == first["run_id"] and again["generated"] == 0
    assert store.counts()["generations"] == 6

    # A limit is another run, but its samples are the same: referenced, not redrawn.
    limited = generate(store, workspace, model=str(tiny_sd_dir), prompts=set_id, settings=settings, limit=3)
    assert limited["run_id"] != first["run_id"]
    assert (limited["n_images"], limited["generated"], limited["reused"]) == (3, 0, 3)


def test_bad_settings_fail_before_anything_is_stored(cli, store, tiny_sd_dir):
    set_id = store.add_prompt_set("two", rows(2))
    before = store.counts()
    code, _, err = cli("generate", "--model", str(tiny_sd_dir), "--prompts", str(set_id), "--scheduler", "magic")
    assert code == 2 and err.startswith("error: unknown scheduler 'magic'")
    code, _, err = cli("generate", "--model", str(tiny_sd_dir), "--prompts", "999")
    assert code == 2 and "prompt set 999 does not exist" in err
    assert store.counts() == before


def test_killed_run_resumes_without_duplicates(store, workspace, tiny_sd_dir):
    from trce_audit.api import generate
    from trce_audit.generation import GenerationSettings

    n = 6
    set_id = store.add_prompt_set("six", rows(n))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [
        sys.executable, "-c", "import sys; from trce_audit.cli import main; sys.exit(main(sys.argv[1:]))",
        "--workspace", str(workspace.root), "generate", "--model", str(tiny_sd_dir), "--prompts", str(set_id),
        "--steps", "2", "--height", "32", "--width", "32", "--batch-size", "1",
    ]
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while store.counts()["generations"] < 1:
            assert child.poll() is None, "the generation process ended before it could be killed"
            assert time.monotonic() < deadline, "no generation was recorded in time"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    stored_before = store.counts()["generations"]
    assert 1 <= stored_before < n

    result = generate(
        store, workspace, model=str(tiny_sd_dir), prompts=set_id,
        settings=GenerationSettings(steps=2, height=32, width=32, batch_size=3),
    )
    generations = store.generations(result["run_id"])
    assert result["generated"] == n - stored_before
    assert len(generations) == n == len({g.prompt_id for g in generations})
    assert store.get_run(result["run_id"]).status == "complete"
