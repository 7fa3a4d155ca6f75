"""Spreading fractional trials over the GPUs of a node.

Ray gives a fractional request the *fullest* GPU it still fits on (best fit, see
`NodeResourceInstanceSet::TryAllocate` in Ray's source), so on a 4-GPU node eight 0.25-GPU
trials all land on GPUs 0 and 1 while 2 and 3 idle. `spread_trial_gpu` undoes that: Ray still
decides which node runs a trial and how many share a node, and each trial then takes the least
loaded GPU of its node that has room for its share, from a small locked ledger file that the
trial processes of that node share (docs/gpu.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from trainables.provenance import cuda_pinned_visible


def choose_gpu(gpus: Sequence[str], claims: Iterable[tuple[str, float]], share: float,
               assigned: dict[str, int] | None = None, fallback: str | None = None) -> str | None:
    """The GPU for a new trial holding `share` of one: among the node's GPUs with room for it
    (the shares already claimed plus this one at most 1), the least loaded; ties go to the GPU
    given out least often so far, then the lowest id. None of them has room (the trials' shares
    fragment the GPUs differently from Ray's packing): `fallback`, Ray's own choice."""
    usage = dict.fromkeys(gpus, 0.0)
    for gpu, claimed in claims:
        if gpu in usage:
            usage[gpu] += claimed
    fits = [g for g in gpus if usage[g] + share <= 1.0 + 1e-9]
    if not fits:
        return fallback
    assigned = assigned or {}
    return min(fits, key=lambda g: (round(usage[g], 6), assigned.get(g, 0), list(gpus).index(g)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class GpuLedger:
    """Which trial process of a node holds how much of which GPU: a JSON file under an
    exclusive lock (fcntl), shared by the trial processes of one node. Claims of processes
    that died are dropped on the next access."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, Any]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                try:
                    state = json.loads(self.path.read_text())
                except (OSError, ValueError):
                    state = {}
                state.setdefault("claims", {})
                state.setdefault("assigned", {})
                state["claims"] = {pid: c for pid, c in state["claims"].items() if _alive(int(pid))}
                yield state
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(state, sort_keys=True))
                os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def claim(self, pid: int, gpus: Sequence[str], share: float, fallback: str,
              pinned: str | None = None) -> str:
        """Record and return the GPU of process `pid` (its earlier claim replaced). `pinned`:
        the GPU this process already initialised CUDA on, the only one it can still use."""
        with self._state() as state:
            claims = state["claims"]
            claims.pop(str(pid), None)
            if pinned is not None:
                gpu = pinned
            else:
                gpu = choose_gpu(gpus, [(c["gpu"], c["share"]) for c in claims.values()], share,
                                 state["assigned"], fallback) or fallback
            claims[str(pid)] = {"gpu": gpu, "share": share}
            state["assigned"][gpu] = state["assigned"].get(gpu, 0) + 1
            return gpu

    def release(self, pid: int) -> None:
        with self._state() as state:
            state["claims"].pop(str(pid), None)

    def claims(self) -> dict[str, dict[str, Any]]:
        with self._state() as state:
            return dict(state["claims"])


def trial_gpu_share() -> float | None:
    """The GPU fraction Ray Tune gave the current trial (None outside a trial or without GPU)."""
    try:
        from ray import tune

        share = tune.get_context().get_trial_resources().required_resources.get("GPU", 0.0)
        return float(share) or None
    except Exception:
        return None


def _node_gpu_count(node_id: str) -> int:
    import ray

    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return int(node.get("Resources", {}).get("GPU", 0))
    return 0


def ledger_path(node_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"feature-reuse-gpus-{node_id[:16]}.json"


@contextlib.contextmanager
def spread_trial_gpu(share: float | None) -> Iterator[list[str]]:
    """Inside a Ray trial: the GPU ids the trial uses, spread over its node's GPUs.

    A fractional trial takes the least loaded GPU of its node (`choose_gpu`) and points
    CUDA_VISIBLE_DEVICES at it before CUDA starts; whole-GPU trials and trials without a GPU
    keep Ray's assignment. A reused actor that already initialised CUDA stays on its GPU. The
    claim is released when the block ends (or when the process dies)."""
    import ray

    ray_ids = [str(g) for g in ray.get_gpu_ids()]
    if len(ray_ids) != 1 or not share or share >= 1:
        yield ray_ids
        return
    node_id = ray.get_runtime_context().get_node_id()
    gpus = [str(i) for i in range(_node_gpu_count(node_id))]
    pinned_visible = cuda_pinned_visible()
    pinned = None
    if pinned_visible is not None:
        entries = [v.strip() for v in pinned_visible.split(",") if v.strip()]
        if len(entries) != 1 or entries[0] not in gpus:
            yield ray_ids  # CUDA started with several GPUs (or other ids) visible: keep Ray's
            return
        pinned = entries[0]
    if ray_ids[0] not in gpus:  # ids that are not 0..n-1 (a raylet started on some GPUs only)
        yield ray_ids
        return
    ledger = GpuLedger(ledger_path(node_id))
    pid = os.getpid()
    gpu = ledger.claim(pid, gpus, share, fallback=ray_ids[0], pinned=pinned)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    try:
        yield [gpu]
    finally:
        ledger.release(pid)
