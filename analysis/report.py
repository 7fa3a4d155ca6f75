"""Every table and figure of the study, rebuilt from the Parquet results alone, in one report.

    python -m analysis.report [--results runs/demo/results] [--out runs/demo/report]

The console and report.html open with one plain sentence (how far transfer is ahead of scratch,
with its 95% interval), then the answer (analysis.answer), Table II, the figures and the details.
Every interval counts seeds and images and is conditional on the one train/val/test split.

Writes into --out (default: the results folder's sibling ``report/``):
  report.html                   self-contained page from a Jinja2 template (--template restyles it)
  table2.md, .csv, .tex         Table II as the study printed it; the Markdown adds the means
                                and intervals, the CSV has every number
  paired.csv                    transfer vs scratch per architecture, train size and split
  fig2.png/.pdf                 val accuracy per epoch, one panel per architecture
  learning_curves.png/.pdf      accuracy against training images per class (2+ train sizes)
  params.png/.pdf               accuracy against trainable parameters (2+ architectures)
  gradcam_<arch>.png            Table I (Grad-CAM) when the sweep kept models
  external_table2.md/.csv, external_fig2.png   with --external-logs (e.g. the study's own logs)
  imagenet_transfer.png/.csv    ImageNet top-1 vs test/OOD accuracy (3+ architectures)
Definitions: docs/analysis.md; the report itself: docs/report.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analysis import aggregate, figures, one_class, probe_report, regime_effects, render, tables
from analysis import answer as answer_mod
from analysis import claims as claims_mod
from analysis import options as options_mod
from analysis import provenance as provenance_mod
from analysis import your_model as your_model_mod
from analysis.effects import Correctness
from analysis.load import DEFAULT_RESULTS, Results, default_out_dir, load_results
from analysis.params_figure import params_missing, params_plot
from analysis.report_inputs import prepare_out_dir, read_manifest_json
from trainables.errors import CommandParser, UserError
from trainables.results.storage import os_error_message


@dataclass
class Report:
    out: Path
    table2: tables.Table2
    answer: answer_mod.Answer
    provenance: provenance_mod.Provenance
    files: list[Path] = field(default_factory=list)
    gradcam: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing_figures: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    probe_console: list[str] = field(default_factory=list)
    your_model: your_model_mod.YourModel | None = None


def parse_layers(values: list[str] | None) -> tuple[str | None, dict[str, str]]:
    """--gradcam-layer values: "PATH" for every architecture, or "ARCH=PATH" for one."""
    default, per_arch = None, {}
    for value in values or []:
        arch, sep, path = value.partition("=")
        if sep:
            per_arch[arch.strip()] = path.strip()
        else:
            default = value.strip()
    return default, per_arch


def _gradcam_section(res: Results, out: Path, n: int, report: Report, data: str | None,
                     ood: str | None, layers: list[str] | None) -> dict[str, Any]:
    """Table I per architecture: its best kept fine-tuned model (else transfer model), with the
    kept scratch model of the same size as an extra column. Returns the template's context."""
    from analysis import gradcam, table_one
    from analysis.image_roots import find_roots

    section: dict[str, Any] = {"figures": [], "messages": [], "images_from": None}
    models = gradcam.report_models(res)
    if not models:
        kept = res.trials["model_path"].notna().any()
        section["messages"].append(
            "No Grad-CAM figure: " + ("models were kept only for scratch trials" if kept else
                                      "the sweep kept no models (rerun it with --keep-models best)"))
        return section
    try:
        roots = find_roots(res, data, ood)
    except UserError as exc:
        msg = f"Grad-CAM skipped: {exc}"
        report.notes.append(msg)
        section["messages"].append(msg)
        return section
    section["images_from"] = roots.origin
    from trainables.archs import arch_slug, resolve
    from trainables.weights import is_cached

    default_layer, per_arch = parse_layers(layers)
    for row, why in models:
        arch = row["arch"]
        layer = per_arch.get(arch, default_layer)
        scratch = gradcam.matching_scratch(res, row)
        try:
            if not is_cached(resolve(arch)):  # resolve: timm may be missing; is_cached: no weights
                raise UserError(f"its ImageNet weights are not in its library's cache "
                                f"(python -m trainables.weights status {arch})")
            table = gradcam.compute(res, row, roots, n=n, layer=layer, scratch=scratch)
            path = table_one.save(table, out / f"gradcam_{arch_slug(arch)}.png")
        except UserError as exc:
            msg = f"Grad-CAM for {arch} skipped: {exc}"
            report.notes.append(msg)
            section["messages"].append(msg)
            continue
        info = table.info
        report.gradcam.append((path, info))
        report.files.append(path)
        command = (f"python -m analysis.gradcam --results {res.root} --arch {arch} --regime "
                   f"{info['regime']} --n {n}" + (" --scratch" if scratch is not None else "")
                   + (f" --layer {layer}" if layer else "")
                   + (f" --data {data}" if data else "") + (f" --ood {ood}" if ood else ""))
        section["figures"].append({
            "arch": arch, "src": render.data_uri(path), "file": path.name, "why": why, "info": info,
            "layer": info["layer"], "layer_default": info["layer_default"], "command": command,
            "n_target": sum(r.image.label == info["target_class"] for r in table.rows),
            "n_other": sum(r.image.label != info["target_class"] for r in table.rows),
            "with_scratch": scratch is not None})
    return section


def build(results: str = DEFAULT_RESULTS, out: str | None = None, gradcam_n: int = 4,
          with_gradcam: bool = True, data: str | None = None, ood: str | None = None,
          gradcam_layers: list[str] | None = None, template: str | None = None,
          options: options_mod.AnalysisOptions | None = None) -> Report:
    """Compute everything, write every file, return what was written."""
    options = options or options_mod.AnalysisOptions()
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = now - clock[0]
        clock[0] = now

    env = render.environment(template)  # a bad --template fails before any work
    res = load_results(results, where=options.where)
    lap("read")
    out_dir = prepare_out_dir(out or default_out_dir(results))
    corr = Correctness(res, res.trials["trial_id"].astype(str).tolist())  # one pass over predictions
    lap("predictions")
    accuracies = regime_effects.regime_accuracies(res, corr)
    regimes = aggregate.with_accuracies(aggregate.regime_summary(res, options.band_rule), accuracies)
    choice = aggregate.regime_choice(res)
    comparisons = regime_effects.compare(res, corr)  # transfer vs scratch at every train size
    lc = aggregate.learning_curves(res)
    claims = claims_mod.check_claims(res, options.claims, corr, comparisons)
    probe = probe_report.build(res, out_dir, corr)  # linear-probe triage, ImageNet accuracy vs transfer
    claims.append(probe.claim)
    broken = answer_mod.broken_lines(res, corr)
    flags = {(a, r): text for (a, r, size), text in broken.items() if size == res.full_size}
    t2 = tables.table2(res, regimes, choice, flags)
    answer = answer_mod.build(res, regimes, accuracies, claims, comparisons, broken)
    prov = provenance_mod.collect(res)
    lap("statistics")
    report = Report(out=out_dir, table2=t2, answer=answer, provenance=prov, notes=list(res.notes),
                    failed=len(res.failed), files=list(probe.files), probe_console=probe.console,
                    your_model=your_model_mod.build(res))
    for ext, text in (("md", t2.markdown()), ("csv", t2.csv()), ("tex", t2.latex())):
        path = out_dir / f"table2.{ext}"
        path.write_text(text, encoding="utf-8")
        report.files.append(path)
    regime_effects.comparisons_frame(comparisons).to_csv(out_dir / "paired.csv", index=False)
    report.files.append(out_dir / "paired.csv")
    manifest = read_manifest_json(res.root, res.manifest_path) if res.manifest_path else None
    majority = one_class.with_val(corr.majority, manifest)  # each split's majority-class line
    figs = _figures(res, regimes, choice, majority, lc, out_dir, report)
    lap("figures")
    if with_gradcam:
        gradcam = _gradcam_section(res, out_dir, gradcam_n, report, data, ood, gradcam_layers)
    else:
        gradcam = {"figures": [], "messages": ["Grad-CAM not drawn (--no-gradcam)."], "images_from": None}
    lap("gradcam")
    # reading the manifest (first done by Grad-CAM) may add a note after the copy above
    report.notes += [n for n in res.notes if n not in report.notes]
    external_html = ""
    if options.external_logs:
        from analysis import external_logs

        external_html, ext_files = external_logs.report_section(
            options.external_logs, options.external_lines, out_dir, options.band_rule)
        report.files.extend(ext_files)
    context = _context(res, report, t2, tables.comparisons_table(comparisons), claims, figs, gradcam)
    context.update(settings=options.describe(), band_rule=options.band_rule.describe(),
                   model_selection=aggregate.model_selection(res),
                   external_html=render.trusted(external_html),
                   probe_html=render.trusted(probe.html), your_model=report.your_model)
    html = env.get_template(Path(template).name if template else render.TEMPLATE).render(**context)
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    report.files.insert(0, path)
    lap("html")
    report.timings = timings
    return report


def _figures(res: Results, regimes, choice, majority, lc, out_dir: Path, report: Report
             ) -> list[dict[str, Any]]:
    """Draw the figures that have something to show; the others become one line of text."""
    ood_label = res.ood_label
    out: list[dict[str, Any]] = []

    def add(fig_id: str, title: str, caption: str, draw, missing: str | None = None) -> None:
        entry = {"id": fig_id, "title": title, "caption": caption, "src": None, "missing": missing}
        if missing is None:
            paths = figures.save(draw(), out_dir, fig_id)
            report.files.extend(paths)
            entry["src"] = render.data_uri(paths[0])
        else:
            report.missing_figures[fig_id] = missing
        out.append(entry)

    add("fig2", "Fig. 2: validation accuracy per epoch",
        f"Train size {res.full_size}. Bold: mean over seeds; shaded: range over seeds (lowest to "
        "highest). Dotted: test accuracy (mean over seeds) of the regime best on validation. "
        f"{ood_label}: solid for the transfer regime chosen on validation, dashed for scratch (means "
        "over seeds, the numbers of Table II and the answer box). Grey dash-dot: the validation "
        "accuracy of always answering the most common class (a model that learnt nothing). Panel "
        "titles: trainable parameters per regime (FT fine-tune, FE feature extraction, SC scratch).",
        lambda: figures.fig2(aggregate.epoch_curves(res), regimes, choice, ood_label, majority.get("val")))
    add("learning_curves", "Learning curves: accuracy against training images per class",
        "Log-scaled x axis, one tick per train size. Per regime: each seed is a point, the line joins "
        "the means across seeds, the shaded band spans the lowest to the highest seed (with 2-3 "
        "seeds a 95% t-interval would span most of the axis; the intervals are in the tables). Grey "
        "dash-dot: the accuracy of always answering the split's most common class.",
        lambda: figures.learning_curves(lc, res.trials, ood_label, majority),
        figures.learning_curves_missing(lc))
    add("params", "Accuracy against trainable parameters",
        "Mean and 95% interval over seeds and images; colour = architecture, marker = "
        "regime. The overparameterisation question: do bigger models do worse with little data?",
        lambda: params_plot(regimes, ood_label), params_missing(regimes))
    return out


def _context(res: Results, report: Report, t2: tables.Table2, comparisons_tab: tables.Tab,
             claims: list[Any], figs: list[dict[str, Any]], gradcam: dict[str, Any]) -> dict[str, Any]:
    """Everything the template sees (docs/report.md lists it for custom templates)."""
    archs = res.trials["arch"].nunique()
    sizes = [s for s, _ in regime_effects.sizes_smallest_first(res)]
    return {
        "results_root": res.root,
        "written": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "n_ok": len(res.trials), "n_failed": len(res.failed),
        "archs_text": f"{archs} architecture{'s' if archs != 1 else ''}",
        "presets": ", ".join(sorted(res.trials["preset"].dropna().unique())) or "n/a",
        "train_sizes": ", ".join(sizes),
        "ood_label": res.ood_label,
        "ood_kinds": ", ".join(res.ood_kinds) or "none (no OOD set)",
        "caveat": res.caveat,
        "notes": report.notes,
        "answer": report.answer,
        "verdict_class": render.VERDICT_CLASS,
        "table2": t2,
        "table2_detail": t2.detail,
        "figures": figs,
        "comparisons": comparisons_tab,
        "conditional": answer_mod.CONDITIONAL,
        "claims_fixed": claims_mod.CLAIMS_NOTE,
        "claims": render.claims_context(claims),
        "gradcam": gradcam,
        "provenance": report.provenance,
        "failed": tables.failed_table(res.failed),
    }


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m analysis.report", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help=f"results folder or URI (default {DEFAULT_RESULTS})")
    p.add_argument("--out", default=None, help="output folder (default: <results>/../report)")
    p.add_argument("--gradcam-n", type=int, default=4,
                   help="images per Grad-CAM figure, half of the first class (default 4)")
    p.add_argument("--gradcam-layer", action="append", metavar="[ARCH=]PATH",
                   help="Grad-CAM target layer as a dotted path, for every architecture or, as "
                   "ARCH=PATH, for one (repeatable), e.g. vgg11_bn=features.11 (default: each "
                   "architecture's own; docs/report.md lists them)")
    p.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM figures")
    p.add_argument("--data", default=None, help="for Grad-CAM: the data folder the sweep was given "
                   "(default: the folder the sweep recorded, or the embedded demo set)")
    p.add_argument("--ood", default=None, help="for Grad-CAM: the OOD folder the sweep was given")
    p.add_argument("--template", default=None, help="a Jinja2 template for report.html (default: "
                   "the packaged analysis/templates/report.html.j2, which yours may extend)")
    options_mod.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.gradcam_n < 1:
        print(f"error: --gradcam-n must be at least 1, got {args.gradcam_n}", file=sys.stderr)
        return 2
    try:
        options = options_mod.from_args(args)
        report = build(args.results, args.out, args.gradcam_n, not args.no_gradcam, args.data,
                       args.ood, args.gradcam_layer, args.template, options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a store that answered the start-up check, then failed
        print(f"error: {os_error_message(exc, args.results)}", file=sys.stderr)
        return 2
    print(report.answer.text())
    for line in report.your_model.lines() if report.your_model else []:
        print(line)
    print("\nTable II\n")
    print(report.table2.markdown())
    for fig_id, why in report.missing_figures.items():
        print(f"{fig_id}: not drawn. {why}")
    for note in report.notes:
        print(f"note: {note}")
    for line in report.probe_console:
        print(line)
    if report.failed:
        print(f"failed trials: {report.failed} (listed in the report, excluded from every number)")
    print(f"report: {report.out / 'report.html'}")
    shown = [p for p in report.files if p.name != "report.html"]
    print("files:  " + "\n        ".join(str(p) for p in shown))
    for path, info in report.gradcam:
        print(f"Grad-CAM ({info['arch']} {info['regime']}, layer {info['layer']}): {path}")
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    print(f"time:   {timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
