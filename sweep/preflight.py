"""Everything checked on the driver before any trial is scheduled, in seconds.

Options, data (validated, split manifest built once), weights of every pretrained architecture,
and storage (a probe file written and deleted through pyarrow's filesystem). All problems are
gathered into one message, so a user fixes them in one go. Once Ray is up, `check_gpu_nodes`
looks at what one tiny task per GPU node found (CUDA usable, the same code as the driver).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from sweep.experiment_config import config_problem, save_record
from sweep.experiment_lock import ExperimentLock
from sweep.grid import GridPoint, GridSpec, build_grid, split_done, with_ids
from sweep.layout import Experiment
from sweep.plan import DataChoice, SweepPlan
from sweep.resources import ClusterInfo
from trainables.config import trial_id_of
from trainables.data.demo import prepare_data
from trainables.data.folders import layout_words
from trainables.data.manifest import DataRoots, Manifest, other_split, select_train
from trainables.errors import UserError
from trainables.presets import PresetMessage, deviations, run_words, schedule_notes
from trainables.regimes import REGIMES
from trainables.results import tables as results
from trainables.results.storage import (
    storage_message,
    storage_problem,
    unparsable_uri_message,
    write_text_atomic,
)

log = logging.getLogger(__name__)

FINISHED_COLUMNS = ("trial_id", "arch", "regime", "best_val_acc")
MANIFEST_FIX = ("delete it and run the same command again: it is rebuilt from --data and checked "
                "against the split hash every finished trial's row carries")


@dataclass
class Ready:
    """What preflight hands to the sweep: the shared manifest and the grid, split by status."""

    experiment: Experiment
    manifest: Manifest
    roots: DataRoots
    grid: list[GridPoint]
    done: list[GridPoint]
    todo: list[GridPoint]
    embedded: bool
    finished: dict[str, dict] = field(default_factory=dict)
    """What the trials table holds of every trial with an ok row (`finished_trials`)."""
    lock: ExperimentLock | None = None
    """Held from preflight until the sweep ends (None for --dry-run); `release` frees it."""
    notes: list[str] = field(default_factory=list)
    warnings: tuple[str, ...] = ()
    """Problems a dry run reports without stopping (missing pretrained weights, settings other
    than the experiment's: sweep/experiment_config.py)."""

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()


def job_working_dir() -> str | None:
    """The working_dir of the `ray job submit` job this driver runs in, if any (Ray runs the
    entrypoint in a temporary copy of it and passes the job's config in this variable)."""
    job = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    return (job.get("runtime_env") or {}).get("working_dir")


def check_storage(experiment: Experiment, storage_arg: str, write: bool = True,
                  timeout_s: float | None = None) -> str | None:
    """A problem message, or None when the experiment folder is writable (or, without `write`,
    at least reachable)."""
    if "://" not in storage_arg and not os.path.isabs(storage_arg) and job_working_dir():
        return (f"--storage {storage_arg}: a relative folder inside a Ray job means the job's "
                f"working directory ({os.getcwd()}), a temporary copy Ray deletes later. Fix: "
                "give an absolute folder on this machine (--storage /home/ray/runs) or shared "
                "storage (--storage s3://bucket/prefix)")
    problem = storage_problem(experiment.root, write=write, timeout_s=timeout_s)
    if problem is None:
        return None
    if "cannot be parsed" in problem:  # named as the user wrote it
        return storage_message("--storage", storage_arg, unparsable_uri_message(storage_arg), write)
    return storage_message(f"--storage {storage_arg}", experiment.root, problem)


def check_train_sizes(manifest: Manifest, sizes: tuple[str, ...]) -> list[str]:
    problems = []
    train = manifest.split_entries("train")
    for size in sizes:
        try:
            select_train(train, manifest.classes, size, manifest.split_seed, manifest.set_aside())
        except UserError as exc:
            problems.append(str(exc))
    return problems


def check_existing_manifest(experiment: Experiment, manifest: Manifest) -> str | None:
    """Refuse to mix two different splits in one experiment's results; a corrupt manifest.json
    is named with the fix (the trials rows carry the split's hash, so deleting it is safe)."""
    try:
        old_hash = other_split(experiment.manifest, experiment.results, manifest.hash,
                               MANIFEST_FIX)
    except UserError as exc:
        return str(exc)
    except Exception:
        return None  # storage problems are reported by check_storage
    if old_hash is None:
        return None
    return (f"experiment {experiment.root} was run on a different split (manifest {old_hash}, "
            f"now {manifest.hash}): the data, --ood or --split-seed changed. Fix: pick a new "
            f"--name, or delete {experiment.root} to start over")


def data_roots_json(roots: DataRoots, manifest: Manifest, embedded: bool) -> str:
    """What <experiment>/data_roots.json (trainables.data.manifest.DATA_ROOTS_FILE) holds: where the
    manifest's relative paths live."""
    return json.dumps({"data": roots.data, "ood": roots.ood, "embedded": embedded,
                       "manifest_hash": manifest.hash}, indent=2) + "\n"


def run_preflight(spec: GridSpec, experiment: Experiment, storage_arg: str, data: DataChoice,
                  write: bool = True) -> Ready:
    """All checks; raises one UserError listing every problem. With `write` (not --dry-run),
    takes the experiment's lock (refused while another sweep holds it) and saves the manifest
    to the experiment; without it, missing weights are only warnings (`Ready.warnings`), so that
    a dry run still shows the grid and the derived settings."""
    roots, manifest, missing_weights = checked_inputs(spec, experiment, storage_arg, data, write)
    grid = with_ids(build_grid(spec), manifest.hash)
    lock = ExperimentLock(experiment) if write else None
    note = lock.acquire() if lock is not None else None
    try:
        finished = finished_trials(experiment.results)
        done, todo = split_done(grid, finished.keys(),
                                stored_ids(experiment.results, finished, grid))
        stored = {id(p.config): p for p in done}
        grid = [stored.get(id(p.config), p) for p in grid]
        if write:
            save_split(experiment, manifest, roots, data)
            save_record(experiment, spec)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return Ready(experiment, manifest, roots, grid, done, todo, embedded=data.embedded,
                 finished=finished, lock=lock,
                 notes=[note] if note else [], warnings=() if write else tuple(missing_weights))


def checked_inputs(spec: GridSpec, experiment: Experiment, storage_arg: str, data: DataChoice,
                   write: bool) -> tuple[DataRoots, Manifest, list[str]]:
    """(where the images are, the split manifest, missing weights) once the options, the data,
    the weights and the storage all pass; else one UserError listing every problem."""
    from sweep.datastore import is_uri, mirror
    from trainables.weights import preflight as weights_preflight

    problems = list(spec.problems())
    manifest = roots = None
    try:
        # A URI (s3://bucket/pool) is copied here once; trials get the bytes from the driver.
        local_data = mirror(data.data, "--data") if is_uri(data.data) else data.data
        local_ood = mirror(data.ood, "--ood") if is_uri(data.ood) else data.ood
        roots, manifest = prepare_data(local_data, local_ood, data.split_seed, None,
                                       data.skip_bad_images, data.allow_duplicates)
    except UserError as exc:
        problems.append(str(exc))
    if manifest is not None:
        problems += check_train_sizes(manifest, spec.resolved_train_sizes)
    try:
        missing_weights = weights_preflight(spec.pretrained_archs)
    except UserError:  # an unknown architecture, already among the problems
        missing_weights = []
    if write:
        problems += missing_weights
    storage_problem = check_storage(experiment, storage_arg, write=write)
    if storage_problem:
        problems.append(storage_problem)
    elif manifest is not None:
        problems += filter(None, [check_existing_manifest(experiment, manifest)])
        other_config = check_config(experiment, spec)
        if other_config:
            (problems if write else missing_weights).append(other_config)
    if problems:
        raise UserError(problems[0] if len(problems) == 1 else
                        f"preflight found {len(problems)} problems:\n" +
                        "\n".join(f"  - {p}" for p in problems))
    assert manifest is not None and roots is not None
    return roots, manifest, missing_weights


def check_config(experiment: Experiment, spec: GridSpec) -> str | None:
    """sweep/experiment_config.py's refusal of other settings; an unreadable trials table is
    left to `finished_trials`, which names the file."""
    try:
        return config_problem(experiment, spec)
    except (OSError, ValueError):
        return None


def save_split(experiment: Experiment, manifest: Manifest, roots: DataRoots,
               data: DataChoice) -> None:
    """The manifest, and where its images are (a URI as the user gave it: `roots` holds its
    temporary local mirror), into the experiment folder."""
    from sweep.datastore import is_uri

    write_text_atomic(experiment.manifest, manifest.to_json())
    recorded = DataRoots(data.data if is_uri(data.data) else roots.data,
                         data.ood if is_uri(data.ood) else roots.ood)
    write_text_atomic(experiment.data_roots, data_roots_json(recorded, manifest, data.embedded))


def finished_trials(results_root: str) -> dict[str, dict]:
    """The trials with an ok row: id -> (arch, regime, best_val_acc), what the progress view
    shows of them. One UserError naming an unreadable or foreign file. The table is read once
    per sweep here: at 100k trials it is the preflight's slowest step."""
    from trainables.results.tables import check_table

    try:
        keys = results.read_table(results_root, "trials", columns=[*FINISHED_COLUMNS, "status"])
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        check_table(results_root, "trials")  # names the file, with the fix
        raise UserError(f"cannot read the finished trials in {results_root}/trials ({exc}). "
                        "Fix: remove the unreadable file it names (its trial runs again)") from None
    if keys["trial_id"].null_count or keys["status"].null_count:
        check_table(results_root, "trials")  # a file of another schema reads as nulls
    ok = keys.filter(pc.equal(keys["status"], "ok")).select(list(FINISHED_COLUMNS))
    return {row["trial_id"]: row for row in ok.to_pylist()}


def stored_ids(results_root: str, finished: dict[str, dict], grid: list[GridPoint]
               ) -> dict[str, str]:
    """Trial id -> the id its finished row is stored under, for rows whose stored id is not the
    one `trial_id` gives today (written when the id hashed every field, or a setting the regime
    does not read differed): recomputed from each such row's config_json and split hash, so
    those trials count as finished and nothing is rerun or rewritten."""
    grid_ids = {p.trial_id for p in grid}
    wanted = grid_ids - finished.keys()
    others = [tid for tid in finished if tid not in grid_ids]
    if not wanted or not others:
        return {}
    rows = results.read_table(results_root, "trials",
                              columns=["trial_id", "status", "config_json", "split_manifest_hash"],
                              filter=pc.field("trial_id").isin(pa.array(others, pa.string())))
    out: dict[str, str] = {}
    for row in rows.to_pylist():
        if row["status"] != "ok" or not row["config_json"]:
            continue
        try:
            config = json.loads(row["config_json"])
            tid = trial_id_of(config, row["split_manifest_hash"] or "")
        except (ValueError, TypeError, AttributeError):
            continue  # not a config this code reads: that trial runs again
        if config.get("regime") in REGIMES and not REGIMES[config["regime"]].legacy_rows:
            continue  # its computation changed since such rows were written: it runs again
        if tid in wanted:
            out.setdefault(tid, row["trial_id"])
    return out


def report(plan: SweepPlan, ready: Ready) -> None:
    """What preflight found: notes, the data's warnings, the split, how the run differs from the
    study, and how many trials are left."""
    for note in ready.notes:
        log.info("note: %s", note)
    for warning in ready.manifest.warnings:
        log.warning("%s", warning)
    counts = ready.manifest.counts()
    images = ", ".join(f"{s} {sum(counts.get(s, {}).values())}"
                       for s in ("train", "val", "test", "ood"))
    made = layout_words(ready.manifest.layout, ready.manifest.split_seed)
    log.info("preflight ok in %.1f s: split %s %s images%s; OOD: %s", time.time() - plan.started,
             ready.manifest.hash, images, f" ({made})" if made else "", ready.manifest.ood_kind)
    # one config per architecture x regime says every difference (seeds and sizes apart)
    configs = list({(p.config.arch, p.config.regime): p.config for p in reversed(ready.grid)}
                   .values())[::-1]
    message = PresetMessage(plan.preset, plan.spec.overrides, deviations(
        configs, data=plan.data.describe(), ood_kind=ready.manifest.ood_kind,
        seeds=plan.spec.resolved_seeds, train_sizes=plan.spec.resolved_train_sizes),
        runs=run_words([p.config for p in ready.grid], plan.data.describe()),
        notes=schedule_notes([p.config for p in ready.grid]))
    for line in message.lines():
        log.info("%s", line)
    log.info("grid: %d trials (%d finished earlier, %d to run) -> %s", len(ready.grid),
             len(ready.done), len(ready.todo), plan.experiment.root)


def check_gpu_nodes(cluster: ClusterInfo, driver_code_version: str,
                    logical_ok: bool = False) -> tuple[list[str], list[str]]:
    """(problems, notes) from the CUDA probe of each GPU node (`resources.read_gpu_nodes`).

    A problem: a node whose GPUs CUDA cannot use (its trials would fail one after another), or
    that runs other code than the driver. A note: a probe that did not answer (a busy or
    starting node: its trials still check CUDA themselves), or logical GPUs in a simulation.
    GPU nodes that an autoscaler starts later are checked by their trials, at their start."""
    from trainables.device import CudaFacts

    problems: list[str] = []
    notes: list[str] = []
    for node in cluster.gpu_nodes:
        where = f"GPU node {node.address} ({node.gpus:g} GPU)"
        if node.error:
            notes.append(f"{where}: CUDA probe failed ({node.error}); its trials check CUDA at start")
            continue
        facts = CudaFacts.from_dict(node.facts or {})
        if not facts.usable:
            if logical_ok:
                notes.append(f"{where}: logical GPUs only, trials train on the CPU "
                             f"(FEATURE_REUSE_LOGICAL_GPUS is set)")
            else:
                problems.append(f"{where}: CUDA is unusable there: {facts.diagnosis()} "
                                f"[{facts.summary()}]")
        if node.code_version and node.code_version != driver_code_version:
            problems.append(f"{where} runs code {node.code_version}, the driver {driver_code_version}. "
                            "Fix: sync the same code to every node (`ray up cluster.yaml` again); "
                            "on one machine: the code changed after the sweep started, start it "
                            "again")
    return problems, notes


def require_gpu_nodes(cluster: ClusterInfo) -> None:
    """check_gpu_nodes, logging its notes and raising one UserError for its problems."""
    from trainables.device import logical_gpus_allowed
    from trainables.provenance import code_version

    problems, notes = check_gpu_nodes(cluster, code_version(), logical_gpus_allowed())
    for note in notes:
        log.info("note: %s", note)
    if problems:
        raise UserError(problems[0] if len(problems) == 1 else
                        f"GPU preflight found {len(problems)} problems:\n" +
                        "\n".join(f"  - {p}" for p in problems))
