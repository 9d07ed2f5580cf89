"""The Ray executor on a two-node mini-cluster (two 1-CPU "nodes" on this machine): a small pocket
eval gives the local executor's rows with 1 and 2 workers, survives a killed worker, fails in one
line when retries are spent and resumes on rerun. Skipped where ray is not installed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from trce_audit.execution import ExecutorOptions, make_executor  # noqa: E402

pytestmark = pytest.mark.slow
SHARED_DATA = Path(os.environ.get("TRCE_AUDIT_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
EVAL = dict(model="pocket", prompts="pocket-explicit", metrics=["pocket"], limit=6, concept="cross")


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    mini = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    mini.add_node(num_cpus=1)
    mini.wait_for_nodes()
    ray.init(address=mini.address, namespace="trce-audit", log_to_driver=False)
    yield mini
    ray.shutdown()
    mini.shutdown()


def _settings():
    from trce_audit.generation import GenerationSettings

    return GenerationSettings(steps=4, batch_size=2, device="cpu")


def _eval(tmp_path, name: str, executor=None, progress=None):
    """A pocket eval in a fresh workspace and store (so no image is reused from another run)."""
    from trce_audit.api import evaluate
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    workspace = Workspace.from_options(tmp_path / name, None, SHARED_DATA if SHARED_DATA.is_dir() else None).ensure()
    store = Store(workspace.db_url)
    kwargs = {"executor": executor} if executor is not None else {}
    result = evaluate(store, workspace, settings=_settings(), progress=progress, **EVAL, **kwargs)
    return store, result


def _rows(store, result):
    """(run identity, prompt idx, image sha256) of every stored image, and the metric values."""
    from sqlalchemy import select

    from trce_audit.store.schema import Generation, Prompt, Run

    with store.session() as session:
        query = (select(Run.identity, Prompt.idx, Generation.image_sha256).join(Run, Generation.run_id == Run.id)
                 .join(Prompt, Generation.prompt_id == Prompt.id).order_by(Run.identity, Prompt.idx))
        images = [tuple(row) for row in session.execute(query)]
    return images, sorted((m["scorer"], m["name"], m["value"], m["n"]) for m in result["metrics"])


def _no_duplicates(store) -> None:
    from sqlalchemy import func, select

    from trce_audit.store.schema import Detection, Generation

    with store.session() as session:
        for columns in ((Generation.run_id, Generation.prompt_id),
                        (Detection.generation_id, Detection.detector, Detection.detector_version, Detection.weights_sha256, Detection.ordinal)):
            assert not list(session.execute(select(*columns).group_by(*columns).having(func.count() > 1)))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The local run, with the workers' threads per process: CPU convolutions round differently with
    another thread count, so equal images need equal threads, not only equal seeds and batches."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        store, result = _eval(tmp_path_factory.mktemp("local"), "local")
    finally:
        torch.set_num_threads(threads)
    return _rows(store, result), store.counts()


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_workers_give_the_local_rows(cluster, straight, tmp_path, workers):
    with make_executor(ExecutorOptions("ray", workers=workers), device="cpu") as executor:
        store, result = _eval(tmp_path, f"ray{workers}", executor)
    assert _rows(store, result) == straight[0] and store.counts() == straight[1]
    runtime = store.get_run(result["generation_run_id"]).runtime
    assert runtime["executor"] == "ray" and runtime["workers"] == workers


def test_killed_worker_after_a_committed_shard_gives_the_straight_run(cluster, straight, tmp_path):
    with make_executor(ExecutorOptions("ray", workers=2, max_retries=2), device="cpu") as executor:
        pids = executor.worker_pids()
        killed = []

        def kill_once(stage, done, total):
            if stage == "generate" and done > 0 and not killed:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(done)

        store, result = _eval(tmp_path, "killed", executor, kill_once)
    assert killed and _rows(store, result) == straight[0] and store.counts() == straight[1]
    _no_duplicates(store)
    stored = {g.image_path for g in store.generations(result["generation_run_id"])}
    assert {str(p) for p in (tmp_path / "killed").rglob("*.png")} == stored  # no unreferenced image


def test_spent_retries_fail_in_one_line_and_the_rerun_completes(cluster, straight, tmp_path):
    from trce_audit.execution.ray_pool import WorkerLost

    with make_executor(ExecutorOptions("ray", workers=1, max_retries=0), device="cpu") as executor:
        (pid,) = executor.worker_pids()

        def kill(stage, done, total):
            if stage == "generate" and done > 0:
                os.kill(pid, signal.SIGKILL)

        with pytest.raises(WorkerLost, match="--max-retries 0 is spent") as failure:
            _eval(tmp_path, "spent", executor, kill)
    assert "\n" not in str(failure.value)
    from trce_audit.store import Store

    store = Store(f"sqlite:///{tmp_path / 'spent' / 'trce-audit.sqlite'}")
    (failed,) = store.list_runs(kind="generate")
    kept = len(store.generations(failed.id))
    assert failed.status == "failed" and "\n" not in failed.error and 0 < kept < 6 and kept % 2 == 0  # whole shards only
    with make_executor(ExecutorOptions("ray", workers=2), device="cpu") as executor:
        store, result = _eval(tmp_path, "spent", executor)
    (rerun,) = store.list_runs(kind="generate")
    assert rerun.id == failed.id and rerun.status == "complete"
    assert _rows(store, result) == straight[0] and store.counts()["generations"] == straight[1]["generations"]
    _no_duplicates(store)


def test_workers_that_differ_from_the_driver_are_refused(cluster, tmp_path, monkeypatch):
    from trce_audit.errors import ConfigError
    from trce_audit.execution import ray_pool

    real = ray_pool.package_versions
    monkeypatch.setattr(ray_pool, "package_versions", lambda: {**real(), "torch": "0.0-driver"})
    with pytest.raises(ConfigError, match=r"Ray worker trce-gpu-0-\w+ refused: package versions differ from the driver's: torch"):
        make_executor(ExecutorOptions("ray", workers=1), device="cpu")


def test_unreachable_address_exits_2_in_one_line(tmp_path):
    env = dict(os.environ)
    done = subprocess.run(
        [sys.executable, "-m", "trce_audit.cli", "--workspace", str(tmp_path / "ws"), "eval", "--model", "pocket",
         "--prompts", "pocket-explicit", "--metric", "pocket", "--limit", "1", "--executor", "ray", "--address", "127.0.0.1:9"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 2 and "no Ray cluster answers at --address 127.0.0.1:9" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ws" / "trce-audit.sqlite").exists()  # nothing written


# The driver, as a user runs it, killed (SIGKILL) at its second shard's commit: the first shard is
# stored and the second's images are on disk with no rows yet, the case a rerun must absorb.
KILLED_DRIVER = """
import os, signal, sys
from trce_audit.store.repository import Store
real, calls = Store.add_generations, []
def add_generations(self, run_id, records, **kwargs):
    records = list(records)
    calls.append(len(records))
    if len(calls) == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, run_id, records, **kwargs)
Store.add_generations = add_generations
from trce_audit.cli import main
sys.exit(main())
"""


def _cli_eval(workspace: Path, extra: list[str], script: str | None = None) -> subprocess.CompletedProcess:
    args = ["--workspace", str(workspace), "eval", "--model", EVAL["model"], "--prompts", EVAL["prompts"],
            "--metric", *EVAL["metrics"], "--limit", str(EVAL["limit"]), "--concept", EVAL["concept"],
            "--steps", "4", "--batch-size", "2", "--device", "cpu", "--json", *extra]
    code = script or "import sys; from trce_audit.cli import main; sys.exit(main())"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the straight run's threads per process
    if SHARED_DATA.is_dir():
        env["TRCE_AUDIT_DATA"] = str(SHARED_DATA)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_killed_driver_and_rerun_give_the_straight_run(cluster, straight, tmp_path, executor):
    import json

    from trce_audit.store import Store

    extra = [] if executor == "local" else ["--executor", "ray", "--address", cluster.address, "--workers", "2"]
    killed = _cli_eval(tmp_path / "ws", extra, KILLED_DRIVER)
    assert killed.returncode == -signal.SIGKILL
    store = Store(f"sqlite:///{tmp_path / 'ws' / 'trce-audit.sqlite'}")
    (interrupted,) = store.list_runs(kind="generate")
    assert interrupted.status == "started" and len(store.generations(interrupted.id)) == 2  # one shard committed
    rerun = _cli_eval(tmp_path / "ws", extra)
    assert rerun.returncode == 0, rerun.stderr
    result = json.loads(rerun.stdout)
    assert result["generation_run_id"] == interrupted.id
    assert _rows(store, result) == straight[0] and store.counts() == straight[1]
    _no_duplicates(store)
    stored = {g.image_path for g in store.generations(interrupted.id)}
    assert {str(p) for p in (tmp_path / "ws").rglob("*.png")} == stored  # no unreferenced image


def _node_of(pid: int, nodes) -> object:
    """The mini-cluster node whose raylet started worker process ``pid`` (its parent chain)."""
    raylets = {node.all_processes["raylet"][0].process.pid: node for node in nodes}
    while pid > 1:
        if pid in raylets:
            return raylets[pid]
        with open(f"/proc/{pid}/stat") as handle:
            pid = int(handle.read().rsplit(")", 1)[1].split()[1])
    raise AssertionError("worker process is not under any mini-cluster node")


def test_removed_node_mid_run_gives_the_straight_run(cluster, straight, tmp_path):
    for _ in range(2):  # room for a restarted worker
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        with make_executor(ExecutorOptions("ray", workers=2, max_retries=2), device="cpu") as executor:
            pids = executor.worker_pids()
            removed = []

            def remove_once(stage, done, total):
                if stage == "generate" and done > 0 and not removed:
                    hosts = [_node_of(pid, cluster.list_all_nodes()) for pid in pids]
                    node = next(n for n in hosts if n is not cluster.head_node)  # the head (GCS) stays
                    cluster.remove_node(node)
                    removed.append(node)

            store, result = _eval(tmp_path, "removed", executor, remove_once)
    finally:  # back to the module's two 1-CPU nodes for the tests after this one
        for node in [n for n in cluster.list_all_nodes() if n is not cluster.head_node]:
            cluster.remove_node(node)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
    assert removed and _rows(store, result) == straight[0] and store.counts() == straight[1]
    _no_duplicates(store)
    stored = {g.image_path for g in store.generations(result["generation_run_id"])}
    assert {str(p) for p in (tmp_path / "removed").rglob("*.png")} == stored


AUDIT_SPEC = """
name = "ray-postgres-pocket"
model = "pocket"
concept = "cross"
include_base = true
[generation]
steps = 4
limit = 4
batch_size = 2
[prompts]
eval = ["pocket-explicit"]
preserve = ["pocket-preserve"]
[metrics]
eval = ["pocket-heldout"]
preserve = ["pocket"]
[[erasers]]
name = "uce"
[[erasers]]
name = "rece"
"""


def _audit(store_url: str, root: Path, executor=None) -> tuple[dict, object]:
    from trce_audit.api import run_audit_spec
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    workspace = Workspace.from_options(root, store_url, SHARED_DATA if SHARED_DATA.is_dir() else None).ensure()
    store = Store(workspace.db_url)
    return run_audit_spec(store, workspace, AUDIT_SPEC, device="cpu", executor=executor), store


def _audit_numbers(result: dict) -> list:
    keys = ("model", "model_fingerprint", "prompt_set", "attack", "gated_scorer", "gated_asr")
    return sorted(tuple(str(r[k]) for k in keys) for r in result["rows"])


def test_pocket_audit_with_ray_on_postgres_gives_the_local_sqlite_numbers(cluster, pg_database, tmp_path):
    import torch

    with make_executor(ExecutorOptions("ray", workers=2), device="cpu") as executor:
        on_ray, store = _audit(pg_database, tmp_path / "ray", executor)
        counts = store.counts()
        again, _ = _audit(pg_database, tmp_path / "ray", executor)
    assert again["resumed"] and store.counts() == counts  # a rerun adds no row
    _no_duplicates(store)
    store.close()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' threads per process
    try:
        local, local_store = _audit(f"sqlite:///{tmp_path / 'local.sqlite'}", tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    assert on_ray["rows"] and _audit_numbers(on_ray) == _audit_numbers(local)
    assert local_store.counts() == counts


RING = {"population": "6", "generations": "2", "length": "3"}


def _attack(root: Path, executor=None, kill_after: int | None = None, monkeypatch=None):
    """Ring-A-Bell on 4 pocket seeds; ``kill_after`` stored seeds, the driver dies (KeyboardInterrupt)."""
    from trce_audit.api import attack
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    workspace = Workspace.from_options(root, None, SHARED_DATA if SHARED_DATA.is_dir() else None).ensure()
    store = Store(workspace.db_url)
    if kill_after is not None:
        stored = Store.add_attack_row

        def add_then_die(self, run_id, *args, **kwargs):
            stored(self, run_id, *args, **kwargs)
            if len(self.attack_rows(run_id)) >= kill_after:
                raise KeyboardInterrupt("killed")

        monkeypatch.setattr(Store, "add_attack_row", add_then_die)
    try:
        result = attack(store, workspace, name="ring-a-bell", model="pocket", concept="cross", prompts="pocket-explicit",
                        limit=4, budget=RING, settings=_settings(), executor=executor)
    finally:
        monkeypatch and monkeypatch.undo()
    return store, result


@pytest.mark.filterwarnings("ignore::trce_audit.attacks.base.BelowPaperBudgetWarning")
def test_attack_killed_after_2_of_4_seeds_resumes_on_2_workers_with_the_serial_set(cluster, tmp_path, monkeypatch):
    import torch

    with make_executor(ExecutorOptions("ray", workers=2), device="cpu") as executor:
        with pytest.raises(KeyboardInterrupt):
            _attack(tmp_path / "ray", executor, kill_after=2, monkeypatch=monkeypatch)
        store, resumed = _attack(tmp_path / "ray", executor)
    assert resumed["stats"]["resumed_seeds"] == 2 and store.counts()["attack_rows"] == 4
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial_store, serial = _attack(tmp_path / "serial")
    finally:
        torch.set_num_threads(threads)
    sha = lambda s, r: s.get_prompt_set(r["adversarial_set_id"]).sha256  # noqa: E731
    assert sha(store, resumed) == sha(serial_store, serial)
    assert resumed["asr_after"] == serial["asr_after"] and resumed["run_id"] == store.list_runs(kind="attack")[0].id


def test_erase_on_a_worker_writes_the_local_artefact(cluster, tmp_path):
    import torch

    from trce_audit.api import erase
    from trce_audit.store import Store
    from trce_audit.workspace import Workspace

    def run(name, executor=None):
        workspace = Workspace.from_options(tmp_path / name, None, SHARED_DATA if SHARED_DATA.is_dir() else None).ensure()
        store = Store(workspace.db_url)
        return store, erase(store, workspace, eraser="uce", concept="cross", model="pocket", device="cpu",
                            **({"executor": executor} if executor else {}))

    with make_executor(ExecutorOptions("ray", workers=1), device="cpu") as executor:
        worker_pid = executor.worker_pids()[0]
        store, remote = run("ray", executor)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, local = run("local")
    finally:
        torch.set_num_threads(threads)
    assert worker_pid != os.getpid() and remote["sha256"] == local["sha256"]
    assert store.get_run(remote["run_id"]).runtime["executor"] == "ray"


def test_shards_go_to_idle_workers_first_and_a_job_may_ask_for_one_call_a_worker(cluster):
    """Two shards on two workers run on both (never both queued on the first), with the default two
    calls a worker as with a job's one (a batch of erases: hours each)."""

    class WhoRuns:
        cache_key = ("who-runs",)

        def setup(self):
            return None

        def run(self, state, shard):
            return os.getpid()

    class OneAtATime(WhoRuns):
        in_flight_per_worker = 1

    class SlowFirst(WhoRuns):  # shard 0 holds its worker for seconds, the others return at once
        def run(self, state, shard):
            import time

            time.sleep(3 if shard == 0 else 0)
            return os.getpid()

    class SlowFirstOneAtATime(SlowFirst):
        in_flight_per_worker = 1

    with make_executor(ExecutorOptions("ray", workers=2), device="cpu") as executor:
        pids = set(executor.worker_pids())
        for job in (WhoRuns(), OneAtATime()):
            assert set(dict(executor.map_unordered(job, [0, 1])).values()) == pids
        queued = dict(executor.map_unordered(SlowFirst(), [0, 1, 2]))  # two a worker: shard 2 waits behind shard 0
        capped = dict(executor.map_unordered(SlowFirstOneAtATime(), [0, 1, 2]))  # one a worker: the free one takes it
    assert queued[2] == queued[0] != queued[1]
    assert capped[2] == capped[1] != capped[0]
