"""Every table and figure of the study, rebuilt from the Parquet results alone, in one report.

    python -m analysis.report [--results runs/demo/results] [--out runs/demo/report]

Writes into --out (default: the results folder's sibling ``report/``):
  report.html                   self-contained: tables, figures (embedded), claims, failed trials
  table2.md, table2.csv, table2.tex   Table II (val band and best-val mean ± 95% CI per regime, OOD)
  paired.csv                    transfer vs scratch per architecture on the same images
  fig2.png/.pdf                 val accuracy per epoch, one panel per architecture
  learning_curves.png/.pdf      accuracy against training images per class
  params.png/.pdf               accuracy against trainable parameters
  gradcam_<arch>.png            Grad-CAM (Table I) when the sweep kept models
  external_table2.md/.csv, external_fig2.png   with --external-logs (e.g. the study's own logs)
  imagenet_transfer.png/.csv    ImageNet top-1 vs test/OOD accuracy (3+ architectures)
and prints the Markdown Table II. Definitions: docs/analysis.md.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import sys
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from analysis import aggregate, figures, probe_report, tables
from analysis import claims as claims_mod
from analysis import options as options_mod
from analysis.load import DEFAULT_RESULTS, Results, default_out_dir, load_results
from trainables.errors import UserError


@dataclass
class Report:
    out: Path
    table2: tables.Table2
    files: list[Path] = field(default_factory=list)
    gradcam: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    probe_console: list[str] = field(default_factory=list)


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></figure>\n'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:2em auto;
padding:0 1em;color:#1b1b1b;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd;padding-bottom:.2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #d4d4d4;padding:.3em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
.note{color:#555;font-size:.88em;max-width:60em}.caveat{background:#fff4d6;border:1px solid #e8c96a;
padding:.6em .9em;border-radius:4px}.meta{color:#555;font-size:.9em}
figure{margin:.6em 0}img{max-width:100%}li{margin:.25em 0}
.holds{color:#17692c;font-weight:600}.partly{color:#8a5a00;font-weight:600}
.fails{color:#a11a2b;font-weight:600}.untestable{color:#666;font-weight:600}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
"""

VERDICT_CLASS = {claims_mod.HOLDS: "holds", claims_mod.PARTLY: "partly", claims_mod.FAILS: "fails",
                 claims_mod.UNTESTABLE: "untestable", claims_mod.NOT_SHOWN: "untestable",
                 claims_mod.NO_DIFFERENCE: "untestable"}


def _gradcam_section(res: Results, out: Path, n: int, report: Report, data: str | None,
                     ood: str | None) -> str:
    """One Grad-CAM figure per architecture with a kept transfer model and cached ImageNet weights."""
    from analysis import gradcam

    candidates = gradcam.transfer_candidates(res)
    if not candidates:
        kept = res.trials["model_path"].notna().any()
        why = ("models were kept only for scratch trials" if kept else
               "the sweep kept no models (rerun it keeping models to get Grad-CAM)")
        return f"<p>No Grad-CAM figure: {escape(why)}.</p>\n"
    from trainables.registry import get_arch
    from trainables.weights import is_cached

    html = ""
    for row in candidates:
        arch = row["arch"]
        if not is_cached(get_arch(arch)):
            msg = (f"Grad-CAM for {arch} skipped: its ImageNet weights are not in torchvision's cache "
                   "(python -m trainables.weights import FILE)")
            report.notes.append(msg)
            html += f"<p>{escape(msg)}.</p>\n"
            continue
        try:
            path, info = gradcam.run(res, trial=row["trial_id"], n=n, out=out / f"gradcam_{arch}.png",
                                     data=data, ood=ood)
        except UserError as exc:
            msg = f"Grad-CAM for {arch} skipped: {exc}"
            report.notes.append(msg)
            html += f"<p>{escape(msg)}.</p>\n"
            continue
        report.gradcam.append((path, info))
        report.files.append(path)
        html += _img(path, f"Grad-CAM {arch}")
        html += (f'<p class="note">{escape(arch)}: best kept transfer model ({escape(info["regime"])}, '
                 f'seed {info["seed"]}, trial {escape(info["trial_id"])}), layer '
                 f'{escape(info["layer"])}, {n} random test images of class '
                 f'{escape(info["target_class"])}. Columns: image, ImageNet-pretrained model '
                 "(target: its own top-1 ImageNet class), transfer-trained model (target: the true "
                 f"class). Reproduce: <code>python -m analysis.gradcam --results {escape(res.root)} "
                 f'--trial {escape(info["trial_id"])} --n {n}{escape(_data_args(data, ood))}</code></p>\n')
    return html


def _data_args(data: str | None, ood: str | None) -> str:
    return (f" --data {data}" if data else "") + (f" --ood {ood}" if ood else "")


def build(results: str = DEFAULT_RESULTS, out: str | None = None, gradcam_n: int = 4,
          with_gradcam: bool = True, data: str | None = None, ood: str | None = None,
          options: options_mod.AnalysisOptions | None = None) -> Report:
    """Compute everything, write every file, return what was written."""
    timings: dict[str, float] = {}
    clock = [time.perf_counter()]

    def lap(name: str) -> None:
        now = time.perf_counter()
        timings[name] = now - clock[0]
        clock[0] = now

    options = options or options_mod.AnalysisOptions()
    res = load_results(results)
    lap("read")
    out_dir = Path(out or default_out_dir(results))
    out_dir.mkdir(parents=True, exist_ok=True)
    regimes = aggregate.regime_summary(res, options.band_rule)
    best = aggregate.best_models(res)
    paired = aggregate.paired_tests(res, best)
    seed_diffs = aggregate.seed_paired(res)
    lc = aggregate.learning_curves(res)
    claims = claims_mod.check_claims(res, regimes, best, paired, options.claims)
    probe = probe_report.build(res, out_dir)  # linear-probe triage, ImageNet accuracy vs transfer
    claims.append(probe.claim)
    t2 = tables.table2(res, regimes, best)
    lap("statistics")
    report = Report(out=out_dir, table2=t2, notes=res.notes, failed=len(res.failed),
                    files=list(probe.files), probe_console=probe.console)
    for ext, text in (("md", t2.markdown()), ("csv", t2.csv()), ("tex", t2.latex())):
        path = out_dir / f"table2.{ext}"
        path.write_text(text, encoding="utf-8")
        report.files.append(path)
    paired.to_csv(out_dir / "paired.csv", index=False)
    report.files.append(out_dir / "paired.csv")
    ood = res.ood_label
    best_overall = {a: aggregate.best_overall(res, a) for a in regimes["arch"].unique()}
    fig_paths = {
        "fig2": figures.save(figures.fig2(aggregate.epoch_curves(res), regimes, best, best_overall, ood),
                             out_dir, "fig2"),
        "learning_curves": figures.save(figures.learning_curves(lc, ood), out_dir, "learning_curves",
                                        pdf=False),
        "params": figures.save(figures.params_plot(regimes, ood), out_dir, "params", pdf=False),
    }
    for paths in fig_paths.values():
        report.files.extend(paths)
    lap("figures")
    gradcam_html = (_gradcam_section(res, out_dir, gradcam_n, report, data, ood) if with_gradcam
                    else "<p>Grad-CAM not drawn (--no-gradcam).</p>\n")
    lap("gradcam")
    extra_html = ""
    if options.external_logs:
        from analysis import external_logs

        extra_html, ext_files = external_logs.report_section(options.external_logs, options.external_lines,
                                                             out_dir, options.band_rule)
        report.files.extend(ext_files)
    images_tab, seeds_tab = tables.paired_tables(paired, seed_diffs, ood)
    html = _html(res, report, t2, tables.regimes_table(regimes, ood), images_tab, seeds_tab, claims,
                 fig_paths, gradcam_html, options, extra_html, probe.html)
    path = out_dir / "report.html"
    path.write_text(html, encoding="utf-8")
    report.files.insert(0, path)
    lap("html")
    report.timings = timings
    return report


def _html(res: Results, report: Report, t2: tables.Table2, detail: tables.Tab, images_tab: tables.Tab,
          seeds_tab: tables.Tab, claims: list[claims_mod.Claim], figs: dict[str, list[Path]],
          gradcam_html: str, options: options_mod.AnalysisOptions, extra_html: str = "",
          probe_html: str = "") -> str:
    n_ok, n_failed = len(res.trials), len(res.failed)
    archs = res.trials["arch"].nunique()
    archs_text = f"{archs} architecture{'s' if archs != 1 else ''}"
    presets = ", ".join(sorted(res.trials["preset"].dropna().unique())) or "n/a"
    sizes = ", ".join(sorted(res.trials["train_size"].unique(), key=str))
    kinds = ", ".join(res.ood_kinds) or "none (no OOD set)"
    parts = [f"<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>Feature reuse: report</title><style>{CSS}</style></head><body>",
             "<h1>The utility of feature reuse: report</h1>",
             f'<p class="meta">Results: <code>{escape(res.root)}</code> · {n_ok} finished trials '
             f"({archs_text}), {n_failed} failed · preset(s): {escape(presets)} · train sizes: "
             f"{escape(sizes)} · OOD set: {escape(kinds)} · written "
             f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}</p>"]
    if res.caveat:
        parts.append(f'<p class="caveat"><b>Caveat</b> — {escape(res.caveat)}.</p>')
    for note in report.notes:
        parts.append(f'<p class="note">Note: {escape(note)}</p>')
    parts += ["<h2>Table II</h2>", t2.html(),
              "<p class=\"note\">Also as table2.md, table2.csv (every number, one row per architecture "
              "and regime) and table2.tex.</p>",
              "<h3>Per regime, with trainable parameters</h3>", detail.html(),
              "<h2>Fig. 2: validation accuracy per epoch</h2>", _img(figs["fig2"][0], "Fig. 2"),
              f'<p class="note">Train size {escape(res.full_size)}. Thin lines: single seeds (at most '
              f"{figures.MAX_SEED_LINES} per regime drawn); bold: their mean. Dotted: test accuracy of "
              f"the best model (chosen on validation). {escape(res.ood_label)}: solid for the best "
              "transfer model, dashed for the best scratch model.</p>",
              "<h2>Transfer vs scratch, paired</h2>", images_tab.html(), seeds_tab.html(),
              probe_html, "<h2>The study's claims on these results</h2>", "<ul>"]
    for c in claims:
        parts.append(f'<li><span class="{VERDICT_CLASS[c.verdict]}">{escape(c.verdict)}</span> — '
                     f"{escape(c.statement)}. {escape(c.evidence[0].upper() + c.evidence[1:])}"
                     + (f" <i>Test:</i> {escape(c.test)}." if c.test else "") + "</li>")
    parts += ["</ul>", "<p class=\"note\">Verdict rules: docs/analysis.md. \"Partly\": for some "
              "architectures but not all. Settings: " + escape(options.describe()) + ".</p>",
              "<h2>Learning curves</h2>", _img(figs["learning_curves"][0], "learning curves"),
              "<h2>Accuracy against trainable parameters</h2>", _img(figs["params"][0], "params"),
              "<h2>Grad-CAM (Table I)</h2>", gradcam_html, extra_html,
              "<h2>Failed trials</h2>", tables.failed_table(res.failed).html(),
              "<h2>Definitions</h2><ul>",
              f"<li><b>Val band</b>: {escape(options.band_rule.describe())}; whole percent, one value "
              "when the ends meet.</li>",
              "<li><b>Mean ± CI</b>: across seeds, two-sided 95% t-interval; n=1 gives no interval.</li>",
              "<li><b>Best model</b>: highest best-val accuracy (ties: lower val loss, then earlier "
              "epoch; never the seed); chosen on validation data only, never on test or OOD accuracy. "
              f"Kept epochs: {escape(aggregate.model_selection(res))}.</li>",
              "</ul>", "</body></html>\n"]
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=DEFAULT_RESULTS,
                   help=f"results folder or URI (default {DEFAULT_RESULTS})")
    p.add_argument("--out", default=None, help="output folder (default: <results>/../report)")
    p.add_argument("--gradcam-n", type=int, default=4, help="images per Grad-CAM figure (default 4)")
    p.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM figures")
    p.add_argument("--data", default=None, help="for Grad-CAM: the data folder the sweep was given "
                   "(not needed for the embedded demo set)")
    p.add_argument("--ood", default=None, help="for Grad-CAM: the OOD folder the sweep was given")
    options_mod.add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        options = options_mod.from_args(args)
        report = build(args.results, args.out, args.gradcam_n, not args.no_gradcam, args.data, args.ood,
                       options)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("Table II\n")
    print(report.table2.markdown())
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
        print(f"Grad-CAM ({info['arch']} {info['regime']}): {path}")
    timing = ", ".join(f"{k} {v:.1f}s" for k, v in report.timings.items())
    print(f"time:   {timing}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

