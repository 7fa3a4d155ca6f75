"""`--dry-run`: what a sweep would do, after its preflight, with nothing run or written.

The cluster it would run on (joined when --address names one), the warnings a real run stops
at, the settings each architecture's trials use (for a model outside the table, how its entry
was derived from torchvision or timm: `trainables.derived`), and the grid: every trial with its
resources and expected cost, in the order Ray would start them, and the expected wall time
(sweep/estimate.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from sweep import cluster_nodes
from sweep.estimate import estimate_line
from sweep.plan import SweepPlan
from sweep.preflight import Ready, require_gpu_nodes
from sweep.ray_session import joining, joins_cluster, ray_session
from sweep.resources import local_cluster_info, plan_resources, ray_cluster_info
from sweep.schedule import grid_lines
from trainables.archs import resolve, source_of
from trainables.config import TrialConfig

log = logging.getLogger(__name__)


def show_dry_run(plan: SweepPlan, ready: Ready) -> int:
    """Log the cluster, the warnings, the settings and the grid; exit status 0."""
    cluster = local_cluster_info()
    if joins_cluster(plan.resources.address):
        with joining(plan.resources.address), ray_session(plan.resources.address):
            cluster = ray_cluster_info()
            for line in cluster_nodes.missing_lines():  # an on-premise cluster's absent machines
                log.info("%s", line)
    require_gpu_nodes(cluster)
    log.info("cluster: %s", cluster.describe())
    for warning in ready.warnings:
        log.info("warning (a real run stops here): %s", warning)
    for line in settings_lines(p.config for p in ready.grid):
        log.info("%s", line)
    r = plan.resources
    resources = plan_resources(plan.spec.resolved_archs, cluster, r.gpus, r.cpus, r.gpu_memory_gb)
    for line in grid_lines(ready.done, ready.todo, ready.manifest.counts(), resources, plan.order):
        log.info("%s", line)
    log.info("%s", estimate_line(ready.todo, ready.manifest.counts(), resources, cluster))
    return 0


def settings_lines(configs: Iterable[TrialConfig]) -> list[str]:
    """Per architecture, the settings its trials use (sizes differ by architecture), and for a
    model outside the table how its entry was derived."""
    seen: dict[str, TrialConfig] = {}
    for c in configs:
        seen.setdefault(c.arch, c)
    lines = ["settings per architecture (all trials; full config: --dry-run rows' config in the "
             "results):"]
    for arch, c in seen.items():
        source = source_of(arch)
        lines.append(
            f"  {arch:14s} [{source}] epochs {c.epochs}, batch {c.batch_size}, lr {c.lr:g}, momentum "
            f"{c.momentum:g}, StepLR {c.step_size}/{c.gamma:g}; train RandomResizedCrop({c.train_crop}); "
            f"val Resize({c.val_resize})/CenterCrop({c.val_crop}); test Resize({c.test_resize})/"
            f"CenterCrop({c.test_crop}); OOD Resize({c.ood_resize})/CenterCrop({c.ood_crop}); "
            f"interpolation {c.interpolation}, mean {_triple(c.mean)}, std {_triple(c.std)}; "
            f"weights {c.weights or 'none'}; bn_mode {c.bn_mode}, backend {c.backend}, "
            f"select_on {c.select_on}")
        if source != "study":
            lines += [f"      derived: {note}" for note in resolve(arch, c.weights).notes]
    return lines


def _triple(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"
