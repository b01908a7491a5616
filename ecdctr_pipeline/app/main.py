"""The ``ecdctr`` entry point: every step verb of :mod:`ecdctr_pipeline.cli.verbs`, plus the
applications built on the pipeline — ``backfill`` (the DAGs' steps over a date range),
``demo``, ``experiments`` and ``efficiency``."""

from __future__ import annotations

import argparse
import sys

from ecdctr_pipeline.cli import verbs
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.cli.verbs import SCALE_HELP, _emit, _settings, _store, scale_name


def cmd_backfill(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from ecdctr_pipeline.app.backfill import backfill
    from ecdctr_pipeline.core.calendar import parse_date
    from ecdctr_pipeline.core.report import markdown_table

    rows = backfill(_store(args), parse_date(args.from_, what="--from"), parse_date(args.to, what="--to"),
                    force=args.force, tiers=tuple(args.tiers.split(",")), config=args.config,
                    stop_on_error=args.fail_fast, dry_run=args.dry_run,
                    only=tuple(s.strip() for s in args.steps.split(",") if s.strip()) if args.steps else None)
    failed = [r for r in rows if r.status.startswith("FAILED")]
    table = markdown_table(("tier", "logical date", "status", "seconds", "TPM set", "CPM", "detail"),
                           [(r.tier, r.logical_date, r.status, f"{r.seconds:.1f}", r.embedding_set, r.cpm_checkpoint,
                             r.detail) for r in rows])
    if args.dry_run:
        table += "\n\n" + "\n".join(f"{r.tier} {r.logical_date}: {cmd}" for r in rows for cmd in r.results.values())
    _emit(args, [asdict(r) for r in rows], table + f"\n\n{len(rows)} run(s), {len(failed)} failed"
          + (" (dry run: nothing ran)" if args.dry_run else ""))
    return 1 if failed else 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ecdctr_pipeline.app.metrics_page import COLUMNS, cells, write
    from ecdctr_pipeline.core.calendar import parse_date
    from ecdctr_pipeline.core.report import markdown_table, screenshot

    r = write(_store(args), parse_date(args.since, what="--since"),
              parse_date(args.until, what="--until") if args.until else None, Path(args.out))
    if args.prometheus:
        from ecdctr_pipeline.app.metrics_page import write_prometheus

        r["prometheus"] = str(write_prometheus(r["rows"], Path(args.prometheus)))
    if args.screenshot:
        r["screenshot"] = str(screenshot(Path(r["html"]).resolve().as_uri(), Path(args.out) / "metrics_page.png",
                                         size="1600,1100", budget_ms=3000))
    _emit(args, r, markdown_table(COLUMNS, [cells(x) for x in r["rows"]]) + f"\n\npage: {r['html']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.app.demo import run_demo

    return run_demo(_settings(args), as_of=args.as_of, days=args.days, json_out=args.json, scale=args.scale,
                    seed=args.seed, out_dir=args.out)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EcdctrError(f"{flag} {text!r}: expected comma-separated integers") from None
    if not out or len(set(out)) != len(out):
        raise EcdctrError(f"{flag} {text!r}: distinct integers, at least one")
    return out


def cmd_experiments(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ecdctr_pipeline.app.experiments import parse_tables, run_tables
    from ecdctr_pipeline.tiers.variants import get

    tables = parse_tables(args.table)
    if args.on_store and args.worlds is not None:
        raise EcdctrError("experiments: --on-store runs on the store's own log; it takes no --worlds")
    worlds = [] if args.on_store else _int_list(args.worlds or "0,1,2", "--worlds")
    seeds = _int_list(args.train_seeds, "--train-seeds")
    if args.days < 1 or args.max_epochs < 1 or args.validation_days < 0 or args.probe_multiple < 0 or args.margin < 0 \
            or args.validation_min_clicks < 0:
        raise EcdctrError("experiments: --days and --max-epochs at least 1; --validation-days, "
                          "--validation-min-clicks, --probe-multiple and --margin 0 or more")
    r = run_tables(_settings(args), tables, worlds=worlds, train_seeds=seeds,
                   scale="the store's own log" if args.on_store else args.scale, monday=args.monday,
                   days=args.days, out_dir=Path(args.out), validation_days=args.validation_days,
                   max_epochs=args.max_epochs, probe_multiple=args.probe_multiple, planted=args.planted,
                   margin=args.margin, patience=args.patience, validation_min_clicks=args.validation_min_clicks,
                   on_store=_store(args) if args.on_store else None)
    lines = []
    for s in r["tables"].values():
        mde = "undefined (1 replicate)" if s["mde"] is None else f"{s['mde']:.4f}"
        lines.append(f"{s['title']} ({s['markdown']}): {len(s['replicates'])} replicates, {s['metric']} GAUC, "
                     f"MDE {mde}")
        for x in s["orderings"]:
            ci = "" if x["ci_low"] is None else f" [{x['ci_low']:+.4f}, {x['ci_high']:+.4f}]"
            p = "" if x["p_holm"] is None else f", p(Holm) {x['p_holm']:.3g}"
            lines.append(f"  {get(x['a']).label} {x['op']} {get(x['b']).label}: {x['verdict']} "
                         f"({x['lift']:+.4f}{ci}{p})")
        if not s["orderings"]:
            key = "expected_mean" if s["metric"] == "expected" else "gauc_mean"
            lines += [f"  {get(x['variant']).label}: {s['metric']} GAUC {x[key]:.4f}" for x in s["rows"]]
    _emit(args, r["tables"], "\n".join(lines) + f"\n({r['seconds']:.0f} s)")
    return 0


def cmd_efficiency(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ecdctr_pipeline.app.efficiency import run_efficiency

    r = run_efficiency(_settings(args), scale=args.scale, monday=args.monday, days=args.days, seed=args.seed,
                       out_dir=Path(args.out), months=args.months)
    w, lift = r["weekly"], r["gauc_lift"]
    _emit(args, r, f"weekly training: E-CDCTR {w['ecdctr_samples']:.0f} samples / {w['ecdctr_seconds']:.0f} s, "
                   f"re-pretraining {w['repretrain_samples']:.0f} samples / {w['repretrain_seconds']:.0f} s "
                   f"({w['samples_ratio']:.2f}x samples, {w['seconds_ratio']:.2f}x wall time); GAUC lift "
                   f"{lift['lift']:+.4f} [{lift['ci_low']:+.4f}, {lift['ci_high']:+.4f}]; report {r['markdown']} "
                   f"({r['seconds']:.0f} s)")
    return 0


def cmd_replicate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ecdctr_pipeline.app import replicates
    from ecdctr_pipeline.core.calendar import parse_date

    out = Path(args.out)
    if args.from_scores:  # the report again from a run's scores: nothing is trained
        result = replicates.load_scores(Path(args.from_scores))
    else:
        if not args.monday:
            raise EcdctrError("replicate: --monday is required (or --from-scores FILE)")
        try:
            seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
        except ValueError:
            raise EcdctrError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
        vary = [v.strip() for v in args.vary.split(",") if v.strip()]
        replicates.configs(seeds, vary)  # refuses bad --seeds / --vary before any work
        result = replicates.run(_settings(args), _store(args), monday=parse_date(args.monday, what="--monday"),
                                days=args.days, seeds=seeds, vary=vary)
        result["training"] = replicates.training_settings(_settings(args))
        replicates.save_scores(result, out / replicates.SCORES)
    summary = replicates.summarize(result)
    summary.update(seconds=result["seconds"], weeks=result["weeks"], models_trained=result["models_trained"],
                   training=result.get("training"))
    md = replicates.write_report(summary, out, title=args.title)
    lines = [f"{v}: lift {replicates._fmt_interval(s['lift'])} ({s['positive']} > 0, {s['negative']} < 0)"
             for v, s in summary["vary"].items()]
    _emit(args, summary, "\n".join(lines) + f"\nreport: {md} ({result['seconds']:.0f} s)")
    return 0


def add_app_verbs(sub, common: argparse.ArgumentParser, js: argparse.ArgumentParser) -> None:
    ef = sub.add_parser("efficiency", help="weekly compute and GAUC of E-CDCTR vs re-pretraining (Markdown + PNG)",
                        parents=[common, js])
    ef.add_argument("--scale", default="medium", metavar="SCALE", type=scale_name, help=SCALE_HELP)
    ef.add_argument("--seed", type=int, default=0)
    ef.add_argument("--monday", default="2026-11-23", help="the CPM Monday; A-CTR days start there")
    ef.add_argument("--days", type=int, default=2, help="A-CTR days both models are compared on (at most 7)")
    ef.add_argument("--months", type=int, default=None,
                    help="months the complete model is re-pretrained on (default: calendar.tpm_train_months)")
    ef.add_argument("--out", default="reports/efficiency", help="folder for the Markdown report and PNG")
    ef.set_defaults(func=cmd_efficiency)

    ex = sub.add_parser("experiments", help="the paper's tables on the simulator: variants on the same days, "
                        "replicates = worlds x training seeds, paired t tests with Holm, the MDE (Markdown + PNG + JSON)", parents=[common, js])
    ex.add_argument("--table", default="main",
                    help="comma-separated: main (E-CDCTR vs Target-only), 2, 3, 4, 5, 6, fig4, aa (the instrument: a "
                         "planted effect and an A/A pair); variants shared by several tables are trained once "
                         "(default: %(default)s)")
    ex.add_argument("--scale", default="small", metavar="SCALE", type=scale_name, help=SCALE_HELP)
    ex.add_argument("--worlds", default=None,
                    help="simulated worlds (seeds of the data), comma-separated (default: 0,1,2)")
    ex.add_argument("--on-store", action="store_true",
                    help="the same protocol on the configured store's own log (a real log) instead of simulated "
                         "worlds: replicates are the --train-seeds, the metric the observed GAUC; its features are "
                         "extracted in the store, nothing is published there")
    ex.add_argument("--train-seeds", default="0",
                    help="training seeds run on every world; a replicate is a world x a training seed "
                         "(default: %(default)s)")
    ex.add_argument("--monday", default="2026-11-23", help="the CPM Monday; A-CTR days start there (default: %(default)s)")
    ex.add_argument("--days", type=int, default=3, help="consecutive A-CTR days per replicate, at most 7 "
                    "(default: %(default)s)")
    ex.add_argument("--out", default="reports/paper", help="folder for the reports (default: %(default)s)")
    ex.add_argument("--validation-days", type=int, default=2,
                    help="early stopping on the last N days of each ad training window, 0: off (default: %(default)s)")
    ex.add_argument("--validation-min-clicks", type=int, default=100,
                    help="the validation slice grows past --validation-days until it holds this many clicks "
                         "(at most half the window; 0: exactly --validation-days) (default: %(default)s)")
    ex.add_argument("--max-epochs", type=int, default=10,
                    help="epoch budget of every fine-tuned variant (default: %(default)s)")
    ex.add_argument("--probe-multiple", type=int, default=20,
                    help="probe holdouts of N times each day's ad volume, scored by expected GAUC; 0: observed "
                         "GAUC only (default: %(default)s)")
    ex.add_argument("--patience", type=int, default=3,
                    help="early-stopping patience in epochs, the same for every variant (default: %(default)s)")
    ex.add_argument("--planted", type=float, default=0.1,
                    help="the planted variant's fraction of the true click logit (table aa) (default: %(default)s)")
    ex.add_argument("--margin", type=float, default=0.002,
                    help="non-inferiority margin of the '>=' orderings, in GAUC (default: %(default)s)")
    ex.set_defaults(func=cmd_experiments)

    rp = sub.add_parser("replicate", help="E-CDCTR vs Target-only on this store over training seeds: intervals "
                        "over replicates, each tier's share of the variance (Markdown + PNG + JSON)",
                        parents=[common, js])
    rp.add_argument("--monday", help="the CPM Monday; A-CTR days start there (required unless --from-scores)")
    rp.add_argument("--days", type=int, default=3, help="consecutive A-CTR days per replicate (at most 7)")
    rp.add_argument("--seeds", default="0,1,2", help="comma-separated; the first is the others' seed with --vary TIER")
    rp.add_argument("--vary", default="all", help="comma-separated: all (every tier's seed together), tpm, cpm, "
                    "actr, target_only (that tier's seed only)")
    rp.add_argument("--out", default="reports/replicates", help="folder for the report")
    rp.add_argument("--title", default="E-CDCTR vs Target-only over training seeds")
    rp.add_argument("--from-scores", metavar="FILE", help="write the report again from the replicates.scores.npz "
                    "of an earlier run (no training; --monday, --days, --seeds, --vary are the run's)")
    rp.set_defaults(func=cmd_replicate)

    bf = sub.add_parser("backfill", help="run TPM months, CPM Mondays, A-CTR days over a range, in order",
                        parents=[common, js])
    bf.add_argument("--from", dest="from_", required=True, metavar="DATE")
    bf.add_argument("--to", required=True, metavar="DATE", help="inclusive")
    bf.add_argument("--force", action="store_true",
                    help="pass --force to the steps that take it: retrain, re-extract, re-export what exists")
    bf.add_argument("--steps", metavar="NAMES", default=None,
                    help="comma-separated step names to run (default: all; sensor and branch steps always run)")
    bf.add_argument("--dry-run", action="store_true", help="print every run's steps and argv; run nothing")
    bf.add_argument("--fail-fast", action="store_true", help="stop at the first failed run (default: go on)")
    bf.add_argument("--tiers", default="tpm,cpm,actr", help="comma-separated subset of tpm,cpm,actr")
    bf.set_defaults(func=cmd_backfill)

    demo = sub.add_parser("demo", help="run the main job end to end on the embedded default", parents=[common, js])
    demo.add_argument("--as-of", default="2026-11-25", metavar="DATE", help="last A-CTR day of the demo calendar")
    demo.add_argument("--days", type=int, default=3, help="A-CTR days to run up to --as-of")
    demo.add_argument("--scale", default="small", metavar="SCALE", type=scale_name, help=SCALE_HELP)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="reports/demo", help="folder for the Markdown report and PNG")
    demo.set_defaults(func=cmd_demo)

    mt = sub.add_parser("metrics", help="the A-CTR days' history as a page: GAUC, served model, verdicts, served age "
                        "(Markdown, HTML, PNG, JSON)", parents=[common, js])
    mt.add_argument("--since", required=True, metavar="DATE", help="first A-CTR day")
    mt.add_argument("--until", metavar="DATE", help="last A-CTR day (default: the newest in the store)")
    mt.add_argument("--out", default="reports/metrics", help="folder for metrics.md/.html/.png/.json")
    mt.add_argument("--prometheus", metavar="FILE", help="also the newest day's figures as Prometheus gauges "
                    "(text format, for node_exporter's textfile collector; written atomically)")
    mt.add_argument("--screenshot", action="store_true", help="also metrics_page.png: the HTML page rendered "
                    "by headless Chromium")
    mt.set_defaults(func=cmd_metrics)


def build_parser() -> argparse.ArgumentParser:
    return verbs.build_parser(extend=add_app_verbs)


def main(argv: list[str] | None = None) -> int:
    return verbs.main(argv, parser=build_parser())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
