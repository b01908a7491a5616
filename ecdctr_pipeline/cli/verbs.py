"""The ``ecdctr`` command line.

Every command takes ``--config FILE``; dated commands take ``--as-of``; machine-readable
output with ``--json``. Failures print one line ``ecdctr: error: ...`` and exit non-zero.
Heavy libraries are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

from ecdctr_pipeline.cli.context import emit as _emit
from ecdctr_pipeline.cli.context import log
from ecdctr_pipeline.cli.context import settings_of as _settings
from ecdctr_pipeline.cli.context import store_of as _store
from ecdctr_pipeline.cli.ops import add_ops_verbs
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.core.settings import TRANSFER_POLICIES

# --scale of every simulating verb (data/simulate.py get_scale says what is accepted)
SCALE_HELP = ("tiny, small, medium or large; <scale>:table1 at the paper's Table 1 volume ratios "
              "(default: %(default)s)")


def scale_name(text: str) -> str:
    """argparse type of --scale: a name :func:`~ecdctr_pipeline.data.simulate.get_scale` accepts."""
    from ecdctr_pipeline.data.simulate import get_scale

    try:
        get_scale(text)
    except EcdctrError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Handler] = {}


# ----------------------------------------------------------------------------- config
def cmd_config_show(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.core.settings import render_settings, settings_dict

    s = _settings(args)
    _emit(args, settings_dict(s, mask=True), render_settings(s).rstrip())
    return 0


def cmd_config_schema(args: argparse.Namespace) -> int:
    fs = _settings(args).features.feature_schema()
    data = {**fs.identity.to_dict(), "columns": [
        {"name": c.name, "role": c.role, "type": c.type, "vocab_size": c.vocab_size, "hash_buckets": c.hash_buckets,
         "source": fs.source_of(c.name)} for c in fs.columns]}
    _emit(args, data, fs.describe())
    return 0


# ----------------------------------------------------------------------------- plan
def cmd_plan(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.core.calendar import plan_for
    from ecdctr_pipeline.core.report import markdown_table

    plan = plan_for(args.as_of, _settings(args).calendar)
    t, c, a = plan["tpm"], plan["cpm"], plan["actr"]
    w = lambda d: f"[{d['start']}, {d['end']})"  # noqa: E731
    rows = [
        ("TPM", t["logical_date"], f"natural months {', '.join(t['train_months'])}",
         f"embedding set {t['embedding_set']} = months {', '.join(t['snapshot_months'])}"),
        ("CPM", c["logical_date"], f"natural {w(c['train_window'])}, eval {w(c['eval_window'])}",
         f"consumes set {c['embedding_set']} (months {', '.join(c['embedding_months'])}); "
         f"checkpoint W={c['checkpoint_id']}"),
        ("A-CTR", a["logical_date"], f"ad {w(a['train_window'])}, holdout {w(a['holdout_window'])}",
         f"CPM W={a['cpm_checkpoint']}" + (f" (fallback W={a['cpm_fallback']})" if a["cpm_fallback"] else
                                          " (no fallback: previous CPM too stale)")
         + f"; set {a['embedding_set']}"),
    ]
    _emit(args, plan, f"Plan as of {plan['as_of']}\n\n" + markdown_table(("tier", "logical date", "data", "uses / produces"), rows))
    return 0


# ----------------------------------------------------------------------------- status
def cmd_status(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.data import artifacts, delta, freshness
    from ecdctr_pipeline.core import paths
    from ecdctr_pipeline.core.report import markdown_table

    store = _store(args)
    corrupt: list[tuple[str, str]] = []
    arts = [artifacts.lineage(m) | {"prefix": p, "_manifest": m}
            for p, m in artifacts.list_artifacts(store, corrupt=corrupt)]
    tables = []
    for key in [paths.raw_table(d) for d in paths.DOMAINS] + [paths.tpm_features()] + [
        paths.complete_features(d) for d in paths.DOMAINS
    ]:
        info = delta.describe(store, key)
        if info:
            tables.append(info)
    checker = freshness.Checker(store)
    stale = []
    for a in arts:
        changed = checker.changes(a.pop("_manifest"))
        a["stale"] = [c.to_dict() for c in changed]
        if changed:
            stale.append((a["kind"], a["id"], freshness.describe(changed)))
    data = {"store": store.root, "tables": tables, "artifacts": arts,
            "corrupt": [{"prefix": p, "error": e} for p, e in corrupt]}
    lines = [f"Store {store.root}", ""]
    if tables:
        schema = lambda d: f"{d['name']}@{d['version']}" if d else "(not recorded)"  # noqa: E731
        lines += ["Delta tables", markdown_table(("table", "version", "partitions", "first dt", "last dt", "schema"),
                  [(t["table"], t["version"], t["partitions"], t["first_dt"], t["last_dt"], schema(t["feature_schema"]))
                   for t in tables]), ""]
    if arts:
        lines += ["Artifacts", markdown_table(
            ("kind", "id", "window", "months", "embedding set", "CPM", "A-CTR", "metrics"),
            [(a["kind"], a["id"], f"[{a['window']['start']}, {a['window']['end']})" if a["window"] else None,
              a["months"], a["embedding_set_label"], a["cpm_label"], a["actr_model"],
              ", ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in list(a["metrics"].items())[:3]))
             for a in arts])]
    if stale:
        lines += ["", "Trained on raw data that changed since (re-extract, then rerun the day: it retrains)",
                  markdown_table(("kind", "id", "changed"), stale)]
    if corrupt:
        lines += ["", "Unreadable artifacts (retrain with --force to replace one)",
                  markdown_table(("artifact", "error"), corrupt)]
    if not tables and not arts and not corrupt:
        # a mistyped --config / ECDCTR_STORE reads as an empty store: say so where an operator sees it
        missing = next(iter(store.iter_children("")), None) is None
        data["store_empty"] = missing
        if missing:
            log.warning("store %s holds nothing (it may not exist: check --config / ECDCTR_STORE; the default "
                        "./ecdctr-data is relative to the working directory)", store.root)
        lines.append("(empty: nothing published yet" + ("; the store holds no object at all)" if missing else ")"))
    _emit(args, data, "\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- data
def cmd_simulate(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.core.calendar import parse_date
    from ecdctr_pipeline.core.report import markdown_table
    from ecdctr_pipeline.data.simulate import simulate

    start, end = parse_date(args.start, what="--start"), parse_date(args.end, what="--end")
    if args.out:  # files to bring to `ecdctr ingest`, named as the schema's sources name them
        from ecdctr_pipeline.data.simulate import write_files

        summary = write_files(args.out, start, end, args.scale, args.seed, fmt=args.format,
                              schema=_settings(args).features.feature_schema(),
                              domains=tuple(args.domain or ("natural", "ad")))
        rows = [(d, v["files"], v["rows"], v["folder"]) for d, v in summary.items()]
        _emit(args, summary, markdown_table(("domain", "files", "rows", "folder"), rows))
        return 0
    summary = simulate(_store(args), start, end, args.scale, args.seed,
                       domains=tuple(args.domain or ("natural", "ad")), schema=_settings(args).features.feature_schema())
    rows = [(d, v["days"], v["rows"], v["ctr"], v["version"]) for d, v in summary.items()]
    _emit(args, summary, markdown_table(("domain", "days", "rows", "CTR", "table version"), rows))
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.core.report import markdown_table
    from ecdctr_pipeline.data.completejourney import build

    counts = build(args.out, negatives=args.negatives, households=args.households, seed=args.seed)
    d = counts["domains"]
    _emit(args, counts, markdown_table(("domain", "impressions", "clicks", "households", "products", "folder"),
                                       [(k, v["rows"], v["clicks"], v["users"], v["items"], v["folder"])
                                        for k, v in d.items()]) + f"\n\nsettings: {args.out}/ecdctr.yaml")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    import datetime as dt

    from ecdctr_pipeline.core.calendar import UTC, parse_instant
    from ecdctr_pipeline.data.ingest import ingest

    now = parse_instant(args.now, what="--now") if args.now else dt.datetime.now(UTC)
    if args.empty_day:
        from ecdctr_pipeline.data import empty_days

        if args.days or args.merge:
            raise EcdctrError("ingest: --days and --merge go with --input, not --empty-day")
        e = empty_days.record(_store(args), args.domain, args.empty_day, now=now)
        _emit(args, e, f"raw/{e['domain']}: {e['day']} recorded as a day with no impressions")
        return 0
    r = ingest(_store(args), args.domain, args.input, now=now, schema=_settings(args).features.feature_schema(),
               days=args.days, merge=args.merge)
    counts = {a: sum(1 for d in r.days if d.action == a) for a in ("added", "replaced", "merged")}
    data = {"domain": r.domain, "rows": r.rows, "files": r.files, "partitions": list(r.partitions), "version": r.version,
            "days": [d.to_dict() for d in r.days],
            "replaced": {d.day: {"stored": d.stored, "rows": d.after, "action": d.action} for d in r.replaced}}
    summary = ", ".join(f"{n} {a}" for a, n in counts.items() if n)
    _emit(args, data, "\n".join(r.lines() + [
        f"ingested {r.rows} rows from {r.files} file(s) into raw/{r.domain}: {len(r.partitions)} partition(s) "
        f"{r.partitions[0]} .. {r.partitions[-1]} ({summary}), version {r.version}"]))
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.data import extract

    settings = _settings(args)
    if args.what == "tpm":
        r = extract.extract_tpm(settings, _store(args), args.as_of, force=args.force)
    else:
        r = extract.extract_complete(settings, _store(args), args.domain, args.as_of, force=args.force)
    w = r.window
    text = (f"{r.table}: {'unchanged (already built from raw version %d)' % r.raw_version if r.skipped else '%d rows' % r.rows}"
            f" for [{w['start']}, {w['end']}) ({r.partitions} partitions), table version {r.version}, {r.seconds:.1f} s")
    _emit(args, r.to_dict(), text)
    return 0


# ----------------------------------------------------------------------------- training
def cmd_train(args: argparse.Namespace) -> int:
    from ecdctr_pipeline import tiers

    options = {"policy": args.policy, "cpm": args.cpm} if args.tier == "actr" else {}
    r = tiers.train(args.tier, _settings(args), _store(args), args.as_of, force=args.force, **options)
    m = r.metrics
    if r.skipped:
        text = f"{r.tier} {r.logical_date}: already published at {r.artifact} (use --force to retrain)"
    else:
        text = f"{r.tier} {r.logical_date}: published {r.artifact} in {r.seconds:.1f} s"
    if m.get("gauc") is not None:
        text += f"; GAUC {m['gauc']:.4f} (coverage {m['gauc_coverage']:.2f}), log loss {m['logloss']:.4f}"
    if r.tier == "actr":
        why = (r.extra.get("blessing") or {}).get("not_evaluable")
        text += f"; NOT EVALUABLE ({why}): not blessed" if why else \
            f"; {'BLESSED' if r.extra.get('blessed') else 'REJECTED'}"
    _emit(args, r.to_dict(), text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.core.report import markdown_table

    settings = _settings(args)
    if args.tier == "cpm":
        from ecdctr_pipeline.evaluation.holdout import cpm_tail_metrics

        m = cpm_tail_metrics(_store(args), args.as_of)
        _emit(args, m, f"CPM {args.as_of} on its evaluation tail: GAUC {m['gauc']:.4f} "
                       f"(coverage {m['gauc_coverage']:.2f}), AUC {m['auc']:.4f}, log loss {m['logloss']:.4f}")
        return 0
    if not (settings.orchestration.compare_target_only or args.compare):
        why = "orchestration.compare_target_only is false (pass --compare to evaluate anyway)"
        _emit(args, {"skipped": why}, f"A-CTR {args.as_of}: no comparison with Target-only: {why}")
        return 0
    from ecdctr_pipeline.tiers.baselines import evaluate_day

    r = evaluate_day(settings, _store(args), args.as_of, force=args.force)
    if r.get("not_evaluable"):
        _emit(args, r, f"A-CTR {r['day']}: no comparison with Target-only: not evaluable ({r['not_evaluable']})")
        return 0
    rows = [(name, m["gauc"], m["gauc_coverage"], m["auc"], m["logloss"], m["impressions"])
            for name, m in (("A-CTR (E-CDCTR)", r["actr"]), ("Target-only", r["target_only"]))]
    text = (f"Holdout [{r['holdout']['start']}, {r['holdout']['end']}) — CPM W={r['cpm_checkpoint']}, "
            f"embedding set {r['embedding_set']}\n\n"
            + markdown_table(("model", "GAUC", "coverage", "AUC", "log loss", "impressions"), rows)
            + f"\n\nGAUC lift of E-CDCTR over Target-only: {r['gauc_lift']:+.4f}")
    g = r["transfer_guard"]
    text += (f"\nlast {g['days']} days: {g['compared']} compared"
             + (f", mean lift {g['mean_lift']:+.4f}" if g["mean_lift"] is not None else "")
             + (f": TRANSFER HARMFUL (below -{g['margin']}), alert sent" if g["harmful"] else ""))
    if r.get("skipped"):
        text += f"\n(the report of model attempt {r['actr_attempt']}, evaluated before: --force evaluates again)"
    _emit(args, r, text)
    return 0


# ----------------------------------------------------------------------------- quality
def cmd_gate(args: argparse.Namespace) -> int:
    """The DAG's quality gate for one tier's run (alerts and raises on failure)."""
    from ecdctr_pipeline.quality.gates import gate

    r = gate(args.tier, _settings(args), _store(args), args.as_of)
    empty = f"; accepted empty day(s): {', '.join(r['empty_days'])}" if r.get("empty_days") else ""
    _emit(args, r, f"{args.tier} gate {args.as_of}: {r['checks']} check(s) passed{empty}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """A readiness check a sensor repeats (``embedding-set``, ``cpm``), or the blessing a run's
    export depends on (``blessed``). Not ready: exit 75 and one line naming what is missing."""
    import datetime as dt

    from ecdctr_pipeline.data import artifacts
    from ecdctr_pipeline.core import calendar, paths
    from ecdctr_pipeline.core.errors import NotReadyError
    from ecdctr_pipeline.tiers import readiness

    settings, store = _settings(args), _store(args)
    if args.what == "embedding-set":
        found = readiness.embedding_set_ready(settings, store, args.as_of)  # OverlapError: fails at once
        if found is None:
            raise NotReadyError(readiness.describe_missing_set(settings, args.as_of))
        _emit(args, found, f"embedding set {found['embedding_set']} (months {', '.join(found['months'])}) is "
                           f"published: {found['uri']}")
        return 0
    if args.what == "cpm":
        now = calendar.parse_instant(args.now, what="--now") if args.now else dt.datetime.now(calendar.UTC)
        waited = readiness.waited_since(calendar.run_due(args.as_of), now)
        found = readiness.cpm_checkpoint_ready(settings, store, args.as_of, waited, alert=args.alert)
        if found is None:
            raise NotReadyError(readiness.describe_missing_cpm(settings, args.as_of))
        _emit(args, found, f"A-CTR {args.as_of} uses CPM checkpoint W={found['cpm_checkpoint']}"
                           + (" (fallback: the week's checkpoint is late)" if found["fallback"] else ""))
        return 0
    day = calendar.parse_date(args.as_of, what="--as-of")
    m = artifacts.read_manifest(store, paths.actr_model(day))
    data = {"actr_model": m.artifact_id, "blessed": m.blessed,
            "blessing": m.blessing.model_dump() if m.blessing else None}
    verdict = m.blessing.describe() if m.blessing else "REJECTED: no blessing record"
    _emit(args, data, f"A-CTR {m.artifact_id}: {verdict}")
    return 0 if data["blessed"] else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.quality.suites import summary_text, validate

    r = validate(_settings(args), _store(args), args.table, args.as_of)
    _emit(args, r, summary_text(r))
    return 0 if r["success"] else 1


# ----------------------------------------------------------------------------- serving
def cmd_export(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.serving.export import export_version

    r = export_version(_settings(args), _store(args), args.as_of, force=args.force)
    if r["skipped"] and r.get("reason"):
        text = f"A-CTR {r['actr_model']} not exported: {r['reason']} (served: {r['served']})"
    elif r["skipped"]:
        text = f"A-CTR {r['actr_model']} is already exported as version {r['version']} (served: {r['served']})"
    elif r.get("resumed"):
        text = (f"A-CTR {r['actr_model']}: serving version {r['version']} was published by an interrupted export; "
                "now served")
    else:
        text = (f"exported A-CTR {r['actr_model']} as serving version {r['version']} (now served; "
                f"max |Δp| vs training graph {r['equivalence_max_abs_diff']:.1e}, {r['seconds']:.1f} s)")
    _emit(args, r, text)
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from ecdctr_pipeline.serving.pointer import rollback

    state = rollback(_store(args), _settings(args).serving.model_name)
    _emit(args, state, f"serving version {state['version']} ({state['history'][-1]['reason']})")
    return 0


def cmd_serving_sync(args: argparse.Namespace) -> int:
    """Keep ``--to`` serving what the store's pointer names (TF Serving reads no S3 since 2.7):
    ``--once`` for the serving pod's init container, ``--follow`` for its sidecar (stops on SIGTERM)."""
    import signal
    import threading

    from ecdctr_pipeline.serving import sync

    if args.interval <= 0:
        raise EcdctrError(f"--interval {args.interval}: expected a number of seconds above 0")
    if args.keep < 1:
        raise EcdctrError(f"--keep {args.keep}: expected at least 1 (the served version)")
    model_name, store, dest = _settings(args).serving.model_name, _store(args), Path(args.to)
    if not args.follow:
        r = sync.sync_once(store, model_name, dest, keep=args.keep)
        _emit(args, r.to_dict(), r.describe())
        return 0
    stop = threading.Event()
    handlers = {}
    if threading.current_thread() is threading.main_thread():  # signals reach the main thread only
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, lambda *_: stop.set())
    log.info("serving-sync: following %s into %s every %gs", store.uri(sync.SERVED_POINTER), dest, args.interval)
    try:
        changes = sync.follow(store, model_name, dest, interval_s=args.interval, keep=args.keep, stop=stop)
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)
    served = sync.served_locally(dest)
    _emit(args, {"stopped": True, "changes": changes, "version": served},
          f"serving-sync: stopped after {changes} change(s); {dest / sync.LOCAL_CONFIG} serves "
          f"{served if served is not None else 'nothing'}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Score ``--input`` a batch of ``--batch-rows`` at a time (read, sent and written batch by
    batch: memory about flat in the rows). The scores go to a temporary file, moved to
    ``--output`` (or copied to stdout) only when every row is scored: a bad row deep in the input
    or a server failing half-way leaves no output and no half-written file."""
    import os
    import shutil
    import tempfile

    from ecdctr_pipeline.serving.client import (
        GrpcScorer, LocalScorer, RestScorer, ServingError, iter_row_batches, score_batches,
    )

    settings = _settings(args)
    if args.batch_rows < 1:
        raise ServingError(f"--batch-rows {args.batch_rows}: expected at least 1")
    batches = iter_row_batches(args.input, batch_rows=args.batch_rows)  # the file's own errors first
    out = Path(args.output) if args.output else None
    if out is not None and not out.parent.is_dir():
        raise ServingError(f"--output {out}: folder {out.parent} does not exist")
    sv = settings.serving
    if args.model:
        scorer = LocalScorer(args.model)
    elif args.rest:
        scorer = RestScorer(args.rest, sv.model_name, version=args.version, timeout_s=sv.request_timeout_s,
                            retries=sv.retries)
    else:
        scorer = GrpcScorer(args.target or sv.grpc_target, sv.model_name, version=args.version,
                            timeout_s=sv.request_timeout_s, retries=sv.retries)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}." if out else ".ecdctr-score.", suffix=".tmp",
                               dir=out.parent if out else None)
    rows = 0
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if args.json:  # what json.dumps({"ctr": [...]}, indent=2) prints
                f.write('{\n  "ctr": [')
            for scores in score_batches(scorer, batches):
                values = scores.tolist()
                if args.json:
                    f.write(("," if rows else "") + ",".join("\n    " + json.dumps(v) for v in values))
                else:
                    f.write("".join(f"{v:.6f}\n" for v in values))
                rows += len(values)
            if args.json:
                f.write("\n  ]\n}\n")
        if out is not None:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as open() would create it (mkstemp makes it 0600)
            os.replace(tmp, out)
        else:
            with open(tmp, encoding="utf-8") as f:
                shutil.copyfileobj(f, sys.stdout)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if hasattr(scorer, "close"):
            scorer.close()
    summary = {"rows": rows, "output": str(out) if out else None}
    if out is not None:
        _emit(args, summary, f"scored {rows} rows into {out}")
    args.result = summary  # execute()'s result: the count, not the scores
    return 0


# ----------------------------------------------------------------------------- parser
VERBOSE_HELP = "-v: progress logs, per-epoch lines and library output; -vv: debug (env ECDCTR_LOG_LEVEL)"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def log_level(verbose: int, env: str | None) -> int:
    """The console's log level: WARNING (quiet) unless ``-v`` (INFO) or ``-vv`` (DEBUG), or the
    ``ECDCTR_LOG_LEVEL`` environment variable (the images set INFO: pod logs keep every step's lines)."""
    if verbose:
        return logging.DEBUG if verbose > 1 else logging.INFO
    if env:
        if env.upper() not in LOG_LEVELS:
            raise EcdctrError(f"ECDCTR_LOG_LEVEL={env!r}: expected one of {', '.join(LOG_LEVELS)}")
        return getattr(logging, env.upper())
    return logging.WARNING


# the commands that load TensorFlow (quiet mode imports it first, see _import_tensorflow_quietly)
TF_COMMANDS = ("train", "evaluate", "export", "score", "efficiency", "experiments", "backfill", "demo")


def _import_tensorflow_quietly() -> None:
    """Import TensorFlow with the process's stderr (fd 2) sent aside: its C++ libraries print
    start-up lines there before any log level applies (absl's "All log messages before
    absl::InitializeLog()", the CUDA stub on CPU-only hosts). Shown if the import fails."""
    import os
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as aside:
        os.dup2(aside.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            aside.seek(0)
            sys.stderr.write(aside.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def _meaningful(default: Any) -> bool:
    """A default worth printing: not unset, not a switch's False, not an empty list (0 is one)."""
    return not (default is None or default is False or default is argparse.SUPPRESS or default in ([], ()))


class _DefaultsHelp(argparse.HelpFormatter):
    """Help that names each option's default (when it has a meaningful one and the text does not
    already say it): a bare ``ecdctr efficiency`` should not start an hour-long run unannounced."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        if (action.option_strings and _meaningful(d) and "default" not in text
                and not isinstance(action, argparse._VersionAction)):
            text += " (default: %(default)s)"
        return text


def _with_defaults_help(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = _DefaultsHelp
    for action in parser._actions:
        if action.help is None and action.option_strings and _meaningful(action.default):
            action.help = "(default: %(default)s)"  # argparse shows no help line for an option without text
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _with_defaults_help(child)


def build_parser(extend: Callable[[Any, argparse.ArgumentParser, argparse.ArgumentParser], None] | None = None
                 ) -> argparse.ArgumentParser:
    """The parser of the step verbs; ``extend(subparsers, common, json_parent)`` adds more
    (the ``ecdctr`` entry point adds ``backfill``, ``demo`` and ``experiments``)."""
    top = argparse.ArgumentParser(add_help=False)
    top.add_argument("--config", metavar="FILE", help="YAML settings file (default: embedded defaults; env ECDCTR_CONFIG)")
    top.add_argument("-v", "--verbose", action="count", default=0, help=VERBOSE_HELP)
    # the same options after the command; SUPPRESS keeps `ecdctr --config F backfill ...` from
    # being reset to the defaults by the subcommand's parser
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="YAML settings file (default: embedded defaults; env ECDCTR_CONFIG)")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    js = argparse.ArgumentParser(add_help=False)
    js.add_argument("--json", action="store_true", help="machine-readable output")

    p = argparse.ArgumentParser(prog="ecdctr", description="E-CDCTR training pipeline", parents=[top])
    from ecdctr_pipeline.data.artifacts import code_version

    p.add_argument("--version", action="version", version=f"ecdctr {code_version()}",
                   help="the code version manifests record (package version + git commit when known)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    cfg = sub.add_parser("config", help="settings", parents=[common])
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    show = cfg_sub.add_parser("show", help="print the effective settings (secrets masked)", parents=[common, js])
    show.set_defaults(func=cmd_config_show)
    sch = cfg_sub.add_parser("schema", help="the feature schema's columns, with its version and fingerprint",
                             parents=[common, js])
    sch.set_defaults(func=cmd_config_schema)

    plan = sub.add_parser("plan", help="windows and artifact ids of all three tiers for a date", parents=[common, js])
    plan.add_argument("--as-of", required=True, metavar="DATE", help="YYYY-MM-DD")
    plan.set_defaults(func=cmd_plan)

    status = sub.add_parser("status", help="tables and published artifacts with their lineage", parents=[common, js])
    status.set_defaults(func=cmd_status)

    sim = sub.add_parser("simulate", help="generate both domains into raw/ (seeded)", parents=[common, js])
    sim.add_argument("--start", required=True, metavar="DATE")
    sim.add_argument("--end", required=True, metavar="DATE", help="inclusive")
    sim.add_argument("--scale", default="small", metavar="SCALE", type=scale_name, help=SCALE_HELP)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--domain", action="append", choices=["natural", "ad"],
                     help="only this domain (repeatable; default both)")
    sim.add_argument("--out", metavar="DIR", help="write <DIR>/<domain>/*.parquet|csv files to ingest instead of "
                     "the store (columns named as the feature schema's sources name them)")
    sim.add_argument("--format", default="parquet", choices=["parquet", "csv"], help="with --out")
    sim.set_defaults(func=cmd_simulate, domain=None)

    ds = sub.add_parser("datasets", help="build a public real log as files to ingest (with its schema and settings)",
                        parents=[common])
    ds_sub = ds.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    cj = ds_sub.add_parser("completejourney", parents=[common, js],
                           help="dunnhumby's The Complete Journey: food as natural, general merchandise as ads")
    cj.add_argument("--out", required=True, metavar="DIR", help="a new folder: logs/, schema, settings, DATASET.md")
    cj.add_argument("--negatives", type=int, default=3, help="unclicked impressions per click (default 3)")
    cj.add_argument("--households", type=int, default=None, metavar="N",
                    help="only the first N households by id (a slice; default all 2 469)")
    cj.add_argument("--seed", type=int, default=0, help="seed of the negatives' draw")
    cj.set_defaults(func=cmd_datasets)

    ing = sub.add_parser("ingest", help="load Parquet/CSV impressions into raw/<domain>", parents=[common, js])
    ing.add_argument("--domain", required=True, choices=["natural", "ad"])
    what = ing.add_mutually_exclusive_group(required=True)
    what.add_argument("--input", metavar="PATH", help="a .parquet/.csv file or a folder of them")
    what.add_argument("--empty-day", metavar="DATE",
                      help="record DATE as having no impressions in --domain (windows then accept it)")
    ing.add_argument("--now", metavar="TIMESTAMP", help="reject events after this instant (default: the clock)")
    ing.add_argument("--days", metavar="D1,D2|START..END",
                     help="the days the input is: they are replaced whatever their row counts, and a row of "
                          "another day is refused (unless --merge); without it a stored day is only replaced by "
                          "at least as many rows as it holds")
    ing.add_argument("--merge", action="store_true",
                     help="merge rows of stored days (of days outside --days) into the stored day by impression "
                          "key instead of replacing the day")
    ing.set_defaults(func=cmd_ingest)

    ext = sub.add_parser("extract", help="Spark feature extraction into Delta", parents=[common])
    ext_sub = ext.add_subparsers(dest="what", required=True, metavar="TABLE")
    et = ext_sub.add_parser("tpm", help="features/tpm for the TPM run of a month", parents=[common, js])
    et.add_argument("--as-of", required=True, metavar="MONTH", help="YYYY-MM or YYYY-MM-01")
    ec = ext_sub.add_parser("complete", help="features/complete/<domain> for the plan's window", parents=[common, js])
    ec.add_argument("--domain", required=True, choices=["natural", "ad"])
    ec.add_argument("--as-of", required=True, metavar="DATE")
    for e in (et, ec):
        e.add_argument("--force", action=argparse.BooleanOptionalAction, default=False, help="recompute even if built from the same raw version")
        e.set_defaults(func=cmd_extract)

    tr = sub.add_parser("train", help="train and publish one tier for a logical date", parents=[common])
    tr_sub = tr.add_subparsers(dest="tier", required=True, metavar="TIER")
    for tier, meta, hlp in (("tpm", "YYYY-MM-01", "TPM month by month → embedding set M"),
                            ("cpm", "MONDAY", "CPM checkpoint for Monday W"),
                            ("actr", "DATE", "A-CTR fine-tuned from the plan's CPM, gated on the holdout")):
        t = tr_sub.add_parser(tier, help=hlp, parents=[common, js])
        t.add_argument("--as-of", required=True, metavar=meta)
        t.add_argument("--force", action=argparse.BooleanOptionalAction, default=False, help="retrain even if the artifact exists")
        if tier == "actr":
            t.add_argument("--policy", choices=TRANSFER_POLICIES,
                           help="transfer policy (default: actr.transfer_policy)")
            t.add_argument("--cpm", metavar="MONDAY", help="the CPM checkpoint to fine-tune from, as chosen by "
                           "`ecdctr check cpm` (the DAG's sensor); must be the plan's or its allowed fallback "
                           "(default: the plan's, else the fallback)")
        t.set_defaults(func=cmd_train, policy=None, cpm=None)

    ev = sub.add_parser("evaluate", help="A-CTR vs Target-only on a day's holdout, or a CPM on its tail",
                        parents=[common, js])
    ev.add_argument("tier", choices=["actr", "cpm"],
                    help="actr: A-CTR vs Target-only on DATE's holdout; cpm: the CPM of Monday DATE on its tail")
    ev.add_argument("--as-of", required=True, metavar="DATE")
    ev.add_argument("--compare", action="store_true",
                    help="actr: compare with Target-only even when orchestration.compare_target_only is false")
    ev.add_argument("--force", action=argparse.BooleanOptionalAction, default=False,
                    help="actr: evaluate again although the day's report holds this model attempt's evaluation")
    ev.set_defaults(func=cmd_evaluate)

    ck = sub.add_parser("check", help="what a sensor waits for, or whether a model is blessed (exit 75: not ready)",
                        parents=[common, js])
    ck.add_argument("what", choices=["embedding-set", "cpm", "blessed"],
                    help="embedding-set: the set the CPM of Monday DATE consumes; cpm: the CPM checkpoint A-CTR "
                         "DATE uses (primary, or the fallback once late); blessed: exit 0 only if A-CTR DATE is "
                         "blessed")
    ck.add_argument("--as-of", required=True, metavar="DATE", help="the run's logical date")
    ck.add_argument("--now", metavar="TIMESTAMP", help="cpm: the instant to measure lateness at (default: the clock)")
    ck.add_argument("--alert", action=argparse.BooleanOptionalAction, default=False,
                    help="cpm: send the cpm_fallback alert when it chooses the fallback (the DAG's sensor passes "
                         "--alert; by default a check run by hand only logs it)")
    ck.set_defaults(func=cmd_check)

    ga = sub.add_parser("gate", help="a tier run's data-quality gate (what the DAG's quality_gate runs)",
                        parents=[common, js])
    ga.add_argument("tier", choices=["tpm", "cpm", "actr"])
    ga.add_argument("--as-of", required=True, metavar="DATE", help="the run's logical date")
    ga.set_defaults(func=cmd_gate)

    va = sub.add_parser("validate", help="run a data-quality suite on one day (non-zero on failure)",
                        parents=[common, js])
    va.add_argument("--table", required=True,
                    choices=["raw/natural", "raw/ad", "features/tpm", "features/complete/natural",
                             "features/complete/ad", "tpm_set"])
    va.add_argument("--as-of", required=True, metavar="DATE", help="the partition's day (tpm_set: its month)")
    va.set_defaults(func=cmd_validate)

    add_ops_verbs(sub, common, js)

    exp = sub.add_parser("export", help="export a blessed A-CTR model as the next TF Serving version",
                         parents=[common, js])
    exp.add_argument("--as-of", required=True, metavar="DATE")
    exp.add_argument("--force", action=argparse.BooleanOptionalAction, default=False, help="export again as a new version")
    exp.set_defaults(func=cmd_export)
    rb = sub.add_parser("rollback", help="serve the previous serving version", parents=[common, js])
    rb.set_defaults(func=cmd_rollback)
    sy = sub.add_parser("serving-sync", help="copy the served version into a local folder for TF Serving "
                        "(the serving pod's init container and sidecar)", parents=[common, js])
    sy.add_argument("--to", required=True, metavar="DIR",
                    help="local folder: DIR/models.config and DIR/<model name>/<version>/")
    mode = sy.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="sync and exit (default): non-zero when nothing is "
                      "served yet or the version does not match its manifest")
    mode.add_argument("--follow", action="store_true", help="sync every --interval seconds until SIGTERM; a "
                      "failure is logged and the last good version stays served")
    sy.add_argument("--interval", type=float, default=30.0, metavar="S", help="--follow: seconds between syncs "
                    "(default 30)")
    sy.add_argument("--keep", type=int, default=2, metavar="N", help="local versions kept: the served one, the one "
                    "served before it (a rollback switches the config only), ... (default 2)")
    sy.set_defaults(func=cmd_serving_sync)
    sc = sub.add_parser("score", help="score rows with TF Serving (gRPC/REST) or a local SavedModel",
                        parents=[common, js])
    sc.add_argument("--input", required=True, metavar="ROWS",
                    help="rows.json (a list of row objects, or an object of columns: read whole), rows.jsonl "
                         "(a row object per line) or rows.parquet")
    where = sc.add_mutually_exclusive_group()
    where.add_argument("--target", metavar="HOST:PORT", help="gRPC PredictionService (default serving.grpc_target)")
    where.add_argument("--rest", metavar="URL", help="REST endpoint, e.g. http://host:8501")
    where.add_argument("--model", metavar="PATH", help="a SavedModel folder: score locally, no server")
    sc.add_argument("--version", type=int, help="model version (default: what the server serves)")
    sc.add_argument("--output", metavar="FILE", help="write the scores to FILE (default: stdout); either is "
                                                     "written only once every row is scored")
    sc.add_argument("--batch-rows", type=int, default=4096, metavar="N",
                    help="rows read, sent and scored at a time (default 4096)")
    sc.set_defaults(func=cmd_score)

    if extend is not None:
        extend(sub, common, js)
    _with_defaults_help(p)
    return p


def execute(argv: list[str]) -> tuple[int, Any]:
    """Run one command in this process: ``(exit status, its JSON-able result)``. Errors raise
    (:class:`EcdctrError` and its kinds), so a caller can tell retryable ones apart; an argv the
    parser rejects raises :class:`UsageError`. DAG steps, sensors and ``ecdctr backfill`` run
    pipeline steps through this, with the argv a pod would get."""
    import contextlib
    import io

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = build_parser().parse_args(argv)
    except SystemExit as exc:
        from ecdctr_pipeline.core.errors import UsageError

        msg = (err.getvalue().strip().splitlines() or [f"exit {exc.code}"])[-1]
        raise UsageError(f"invalid command line `ecdctr {' '.join(argv)}`: {msg}") from None
    args.result = None
    rc = args.func(args)
    return rc, json.loads(json.dumps(args.result, default=str))


def _store_failure(exc: BaseException) -> str | None:
    """A one-line message for an error of the object store's client (S3 unreachable, refused,
    timed out), or None for anything else."""
    module = type(exc).__module__ or ""
    if module.startswith(("botocore", "urllib3", "s3transfer")) or isinstance(exc, ConnectionError):
        return f"the store did not answer ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); retry when it is back"
    return None


# errors of the local file system a command cannot recover from (a read-only or full store)
_FILE_ERRNOS = ("EROFS", "EACCES", "EPERM", "ENOSPC", "EDQUOT")


def _file_failure(exc: BaseException) -> str | None:
    """One line for a file the command could not write (a read-only, full or forbidden store
    folder), naming the file; None for anything else."""
    import errno

    codes = {getattr(errno, n) for n in _FILE_ERRNOS if hasattr(errno, n)}
    if isinstance(exc, OSError) and exc.errno in codes and exc.filename:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        return f"cannot write {exc.filename}: {exc.strerror} ({name})"
    return None


def _read_failure(args: argparse.Namespace, exc: BaseException) -> str | None:
    """One line for a Delta table's data file a Spark job could not read (missing or not
    Parquet), naming the table and the file; None for anything else."""
    store = getattr(args, "_store", None)
    if store is None or not (type(exc).__module__ or "").startswith(("pyspark", "py4j")):
        return None
    from ecdctr_pipeline.data.delta import spark_read_failure

    return spark_read_failure(store, exc)


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader went away (its buffer cannot be written, or poll
    reports the pipe's error state)."""
    import select

    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        return True
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), stdout not a file
        return False


def _quiet_broken_pipe() -> int:
    """Exit quietly once the reader of stdout went away: stdout is pointed at /dev/null so the
    interpreter's final flush does not complain (Python's documented recipe, "Note on SIGPIPE");
    the exit status is 141 (128 + SIGPIPE), what a shell tool killed by the closed pipe returns."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 141


# a pod writes its step's JSON result here, KubernetesPodOperator's XCom sidecar reads it
# (orchestration/airflow_support.py sets it; it is not a setting)
ENV_RESULT_FILE = "ECDCTR_RESULT_FILE"


def _write_result(path: Path, result: Any) -> None:
    """The command's JSON result (what ``execute`` returns in-process) as ``path``, whole or not
    at all: written beside it and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(path)


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Parse ``argv`` with ``parser`` (default: the step verbs) and run the command; errors
    print one line and return the error's exit status."""
    import os

    parser = parser or build_parser()
    if argv is None and "_ARGCOMPLETE" in os.environ:  # shell completion: answers and exits
        import argcomplete

        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        level = log_level(args.verbose, os.environ.get("ECDCTR_LOG_LEVEL"))
    except EcdctrError as exc:
        print(f"ecdctr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    if level > logging.INFO:  # quiet: TensorFlow's C++ start-up lines (cuInit on CPU-only hosts) too
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        # pyspark (imported by Spark jobs, and by Great Expectations when installed) warns on every
        # pandas >= 3 import; the pinned pair is what the tests run
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        if getattr(args, "command", None) in TF_COMMANDS:
            _import_tensorflow_quietly()
    root = logging.getLogger()
    if not root.handlers:  # the console handler filters too: libraries set INFO on loggers of their own
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(level)
    try:
        args.result = None
        rc = args.func(args)
        sys.stdout.flush()  # a closed stdout shows here, not as a complaint at the interpreter's exit
        if rc == 0 and os.environ.get(ENV_RESULT_FILE):
            _write_result(Path(os.environ[ENV_RESULT_FILE]), args.result)
        return rc
    except EcdctrError as exc:
        print(f"ecdctr: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except BrokenPipeError as exc:
        if _stdout_closed():  # `ecdctr ... | head`: the reader has what it wanted
            return _quiet_broken_pipe()
        print(f"ecdctr: error: {_store_failure(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:  # a store that went away mid-command: one line, not a traceback
        msg = _store_failure(exc) or _file_failure(exc) or _read_failure(args, exc)
        if msg is None:
            raise
        print(f"ecdctr: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ecdctr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
