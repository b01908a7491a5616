"""The streaming input: every row once per pass, bounded shuffling, balanced file shards, streamed
scores equal to in-memory scores, exact epoch length."""

import datetime as dt

import numpy as np
import pytest

from ecdctr_pipeline.core import calendar, paths
from ecdctr_pipeline.data import delta
from ecdctr_pipeline.data.store import open_store
from ecdctr_pipeline.modeling import streaming
from ecdctr_pipeline.modeling.preprocessing import LABEL, FeatureLayout, raw_columns
from ecdctr_pipeline.modeling.training import DataSpec
from tests.conftest import tiny_settings

WINDOW = calendar.Window(dt.date(2026, 10, 27), dt.date(2026, 11, 23))  # A-CTR 2026-11-24's training days


@pytest.fixture(scope="module")
def ad(tiny_pipeline_store):
    s = tiny_settings(f"file://{tiny_pipeline_store}")
    store = open_store(s.store)
    table = paths.complete_features("ad")
    layout = FeatureLayout.complete(s.features)
    data = DataSpec(table, delta.version(store, table), WINDOW, None, layout)
    source = streaming.open_source(store, data, WINDOW, who="test")
    full, _ = delta.read(store, table, partitions=WINDOW.partitions(), columns=list(layout.columns))
    return s, store, data, layout, source, raw_columns(full, layout)


def row_keys(arrays):
    """One comparable key per row (all raw columns)."""
    cols = [arrays[k].reshape(len(arrays[LABEL]), -1).astype(np.float64) for k in sorted(arrays)]
    return sorted(map(tuple, np.concatenate(cols, axis=1)))


def test_source_counts_every_row_of_the_pinned_version(ad):
    _, _, _, _, source, full = ad
    assert source.num_rows == len(full[LABEL]) > 0
    assert len(source.fragments) >= WINDOW.days  # at least one file a day


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_pass_yields_every_row_once_in_full_batches(ad, shuffle):
    _, _, _, layout, source, full = ad
    batches = list(streaming.raw_batches(source, layout, 100, shuffle=shuffle, seed=1, buffer_rows=500,
                                         read_rows=64))
    sizes = [len(b[LABEL]) for b in batches]
    assert all(n == 100 for n in sizes[:-1]) and 0 < sizes[-1] <= 100
    assert len(batches) == -(-source.num_rows // 100)
    got = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
    assert row_keys(got) == row_keys(full)  # nothing lost, nothing repeated
    unshuffled = np.concatenate([b["user_id"] for b in streaming.raw_batches(source, layout, 100, shuffle=False)])
    if shuffle:
        assert not np.array_equal(got["user_id"], unshuffled)
        again = np.concatenate([b["user_id"] for b in streaming.raw_batches(source, layout, 100, shuffle=True,
                                                                            seed=1, buffer_rows=500, read_rows=64)])
        other = np.concatenate([b["user_id"] for b in streaming.raw_batches(source, layout, 100, shuffle=True,
                                                                            seed=2, buffer_rows=500, read_rows=64)])
        assert np.array_equal(again, got["user_id"]) and not np.array_equal(other, got["user_id"])
    else:
        assert np.array_equal(got["user_id"], unshuffled)


def test_shuffle_buffer_is_bounded(ad, monkeypatch):
    """The generator never holds more than the buffer plus one record batch of rows."""
    _, _, _, layout, source, _ = ad
    held = []
    real = streaming._concat

    def spy(parts):
        held.append(sum(len(p[LABEL]) for p in parts))
        return real(parts)

    monkeypatch.setattr(streaming, "_concat", spy)
    list(streaming.raw_batches(source, layout, 50, shuffle=True, buffer_rows=400, read_rows=64))
    assert held and max(held) < 400 + 64


def test_shards_are_disjoint_balanced_and_cover_the_window(ad):
    _, _, _, _, source, _ = ad
    shards = [source.shard(i, 3) for i in range(3)]
    paths_ = [f.path for s in shards for f in s.fragments]
    assert sorted(paths_) == sorted(f.path for f in source.fragments) and len(set(paths_)) == len(paths_)
    assert sum(s.num_rows for s in shards) == source.num_rows
    assert max(s.num_rows for s in shards) - min(s.num_rows for s in shards) <= max(source.rows)
    assert "shard 2/3" in shards[1].describe()
    with pytest.raises(streaming.StreamError, match="cannot feed"):
        source.shard(0, len(source.fragments) + 1)


def test_dataset_has_the_epoch_length_and_model_inputs(ad):
    _, _, _, layout, source, _ = ad
    ds = streaming.make_dataset(source, layout, 256, shuffle=True, seed=0)
    assert int(ds.cardinality()) == -(-source.num_rows // 256)
    x, y = next(iter(ds))
    assert set(x) >= set(layout.features) and y.shape[0] == 256
    assert x["user_id"].shape == (256, 1) and x["hist_item_ids"].shape == (256, layout.max_seq_len)
    # two iterations (epochs) are two different shuffles of the same rows
    a = np.concatenate([b[0]["user_id"].numpy().ravel() for b in ds])
    b = np.concatenate([b[0]["user_id"].numpy().ravel() for b in ds])
    assert len(a) == len(b) == source.num_rows and not np.array_equal(a, b)
    assert np.array_equal(np.sort(a), np.sort(b))


def test_streamed_scores_equal_in_memory_scores(ad):
    from ecdctr_pipeline.modeling.models import build_complete_model
    from ecdctr_pipeline.modeling.training import predict

    s, _, _, layout, source, _ = ad
    model = build_complete_model(s.cpm, s.features, None, name="score_test")
    labels, scores, users = streaming.score_stream(model, source, layout, batch_size=333)
    in_file_order = {k: np.concatenate([b[k] for b in streaming.raw_batches(source, layout, 10_000, shuffle=False)])
                     for k in layout.columns}
    np.testing.assert_allclose(scores, predict(model, in_file_order, layout), atol=1e-5)
    assert np.array_equal(labels, in_file_order[LABEL]) and np.array_equal(users, in_file_order["user_id"])


def test_a_missing_day_is_named(ad):
    _, store, data, _, _, _ = ad
    with pytest.raises(streaming.StreamError, match="has no partition 2026-11-24"):
        streaming.open_source(store, data, calendar.Window(dt.date(2026, 11, 20), dt.date(2026, 11, 25)), who="t")


def test_tagged_source_reads_every_part_once_with_its_tag(ad):
    """Sample merging's stream: two parts, each row carrying its part's domain, nothing dropped."""
    from ecdctr_pipeline.modeling.preprocessing import DOMAIN

    s, store, data, layout, source, full = ad
    first = calendar.Window(WINDOW.start, WINDOW.start + dt.timedelta(days=10))
    rest = calendar.Window(first.end, WINDOW.end)
    a = streaming.open_source(store, data, first, who="test")
    b = streaming.open_source(store, data, rest, who="test")
    tagged = streaming.TaggedSource(((a, ((DOMAIN, 0),)), (b, ((DOMAIN, 1),))))
    merged = FeatureLayout.complete(s.features, domain_indicator=True)
    assert tagged.num_rows == source.num_rows and merged.categorical[-1] == DOMAIN
    batches = list(streaming.raw_batches(tagged, merged, 97, shuffle=True, seed=3, buffer_rows=500))
    got = {k: np.concatenate([x[k] for x in batches]) for k in batches[0]}
    assert np.bincount(got[DOMAIN]).tolist() == [a.num_rows, b.num_rows]
    without = {k: v for k, v in got.items() if k != DOMAIN}
    assert row_keys(without) == row_keys(full)  # every row once, shuffled across both parts
    assert 0 < got[DOMAIN][: len(got[DOMAIN]) // 2].mean() < 1  # the file order mixes the parts
    with pytest.raises(streaming.StreamError, match="one input pipeline, not 2"):
        tagged.shard(0, 2)
    # one column of every part (the trainers count a validation slice's clicks with it)
    assert tagged.column("click").tolist() == a.column("click").tolist() + b.column("click").tolist()
    assert np.bincount(tagged.column(DOMAIN)).tolist() == [a.num_rows, b.num_rows]


def test_a_cached_window_is_decoded_once_and_each_epoch_permutes_every_row(ad, monkeypatch):
    _, _, _, layout, source, full = ad
    reads = []
    real = streaming.raw_batches
    monkeypatch.setattr(streaming, "raw_batches", lambda *a, **k: reads.append(1) or real(*a, **k))
    budget = streaming.decoded_bytes(source, layout)

    def epoch_rows(ds):
        batches = list(ds)
        assert all(len(y) == 256 for _, y in batches[:-1])
        return (np.concatenate([x["user_id"].numpy().ravel() for x, _ in batches]),
                np.concatenate([x["item_id"].numpy().ravel() for x, _ in batches]))

    ds = streaming.make_dataset(source, layout, 256, shuffle=True, seed=0, cache_bytes=budget)
    assert int(ds.cardinality()) == -(-source.num_rows // 256)
    e0, e1 = epoch_rows(ds), epoch_rows(ds)
    assert len(reads) == 1  # the files were decoded once, for both epochs
    keys = lambda u, i: sorted(zip(u.tolist(), i.tolist()))  # noqa: E731
    assert keys(*e0) == keys(*e1) == sorted(zip(full["user_id"].tolist(), full["item_id"].tolist()))
    assert not np.array_equal(e0[0], e1[0])  # a new permutation of the rows, not only of the batches
    # epoch 1 is the same whether a run starts at 0 or resumes at 1 (stateless seed (seed, epoch))
    resumed = streaming.make_dataset(source, layout, 256, shuffle=True, seed=0, cache_bytes=budget, first_epoch=1)
    assert np.array_equal(epoch_rows(resumed)[0], e1[0])
    # endless for the replicas: one epoch after the other
    endless = streaming.make_dataset(source, layout, 256, shuffle=True, seed=0, cache_bytes=budget, repeat=True)
    n = -(-source.num_rows // 256)
    first = np.concatenate([x["user_id"].numpy().ravel() for x, _ in endless.take(2 * n)])
    assert np.array_equal(first, np.concatenate([e0[0], e1[0]]))
    # one byte short of the budget: it streams (the files are read again each epoch)
    reads.clear()
    small = streaming.make_dataset(source, layout, 256, shuffle=True, seed=0, cache_bytes=budget - 1)
    epoch_rows(small), epoch_rows(small)
    assert len(reads) == 2
