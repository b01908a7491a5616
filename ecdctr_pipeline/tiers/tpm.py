"""TPM, monthly: a tiny CTR model trained month by month over ``M-6 .. M-1`` of natural data
(weights carry over from month to month); after each of the last 3 months the user and item
id tables are snapshotted into embedding set ``M`` (``user_<m>.parquet``, ``item_<m>.parquet``)."""

from __future__ import annotations

import numpy as np

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.core.settings import Settings
from ecdctr_pipeline.data import artifacts
from ecdctr_pipeline.data.store import ArtifactStore
from ecdctr_pipeline.modeling.preprocessing import FeatureLayout
from ecdctr_pipeline.modeling.training import (
    DataSpec, HParams, TrainArgs, TrainResult, TrainingError, fit, pinned_version, placement, set_seed,
)


def plan(settings: Settings, when) -> calendar.TPMPlan:
    return calendar.tpm_plan(when, settings.calendar)


def artifact(p: calendar.TPMPlan) -> tuple[str, str]:
    return str(p.month), paths.tpm_set(p.month)


def resolve(settings: Settings, store: ArtifactStore, p: calendar.TPMPlan) -> TrainArgs:
    who = f"train tpm {p.month}"
    table = paths.tpm_features()
    version, empty = pinned_version(store, table, [p.data_window], who=who,
                                    schema=settings.features.feature_schema(),
                                    max_empty=settings.calendar.max_empty_days)
    t = settings.tpm
    return TrainArgs(
        tier="tpm", who=who, logical_date=p.logical_date.isoformat(), artifact_id=str(p.month),
        artifact=paths.tpm_set(p.month), plan=p, store=store,
        data=DataSpec(table, version, p.data_window, None, FeatureLayout.tpm(settings.features), empty),
        hparams=HParams(t.learning_rate, t.batch_size, t.epochs_per_month, t.seed), model=t,
        features=settings.features, data_window=p.data_window, training=settings.training,
        months=tuple(str(m) for m in p.snapshot_months),
        params={"dim": t.embedding_dim, "train_months": [str(m) for m in p.train_months],
                "hidden_units": t.hidden_units, "learning_rate": t.learning_rate, "user_item_dot": t.user_item_dot},
    )


def run_training(args: TrainArgs) -> TrainResult:
    from dataclasses import replace

    from ecdctr_pipeline.data import embedding_sets
    from ecdctr_pipeline.modeling import streaming
    from ecdctr_pipeline.modeling.models import build_tpm_model, compile_model, compile_options

    p, hp, layout = args.plan, args.hparams, args.data.layout
    months = {}
    for m in p.train_months:  # one streaming source a month; the id columns are read first for the vocabularies
        months[m] = streaming.open_source(args.store, args.data, m.window, who=f"{args.who} month {m}")
    ids = {m: (np.unique(s.column("user_id")), np.unique(s.column("item_id"))) for m, s in months.items()}
    user_vocab = np.unique(np.concatenate([u for u, _ in ids.values()]))
    item_vocab = np.unique(np.concatenate([i for _, i in ids.values()]))
    set_seed(hp.seed)
    with placement(args).strategy.scope():
        model = compile_model(build_tpm_model(args.model, args.features, user_vocab, item_vocab), hp.learning_rate,
                              **compile_options(args.training))
    seen_users = np.zeros(len(user_vocab), bool)
    seen_items = np.zeros(len(item_vocab), bool)
    result = TrainResult(scratch=args.store.scratch_dir("ecdctr-tpm-"))
    try:
        for i, (m, source) in enumerate(months.items()):
            seen_users[np.searchsorted(user_vocab, ids[m][0])] = True
            seen_items[np.searchsorted(item_vocab, ids[m][1])] = True
            hist = fit(model, source, layout, hparams=replace(hp, seed=hp.seed + i), training=args.training,
                       label=f"{args.who} month {m}")
            result.train_metrics[f"train_loss_{m}"] = hist.get("loss")
            result.row_counts[f"train_rows_{m}"] = source.num_rows
            if m in p.snapshot_months:
                for side, vocab, seen in (("user", user_vocab, seen_users), ("item", item_vocab, seen_items)):
                    weights = model.get_layer(f"tpm_{side}_embedding").embeddings.numpy()
                    bad = int((~np.isfinite(weights[1:][seen])).any(axis=1).sum())
                    if bad or not np.isfinite(hist.get("loss", 0.0)):  # a diverged run is never published
                        raise TrainingError(f"{args.who}: month {m} diverged ({bad} {side} embedding row(s) not "
                                            f"finite, loss {hist.get('loss')}); nothing published: lower "
                                            "tpm.learning_rate")
                    name = embedding_sets.table_name(side, str(m))
                    n = embedding_sets.write_table(result.scratch / name, vocab[seen], weights[1:][seen])
                    result.files[name] = result.scratch / name
                    result.row_counts[name.removesuffix(".parquet")] = n
    except BaseException:
        result.cleanup()
        raise
    return result


def assess(args: TrainArgs, result: TrainResult):
    """TPM has no held-out data: its record is the training loss of each month."""
    return dict(result.train_metrics), None


def summary(m: artifacts.Manifest) -> dict:
    return {"months": m.months, "rows": m.row_counts}
