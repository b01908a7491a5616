"""Typed pipeline settings.

One :class:`Settings` object made of sub-sections. Sources, later ones win:

1. the embedded defaults below (a laptop or CI needs no file at all),
2. an optional YAML file (``--config FILE`` or ``ECDCTR_CONFIG``),
3. environment overrides ``ECDCTR_<SECTION>__<KEY>=value`` (values parsed as YAML
   scalars/lists, e.g. ``ECDCTR_CPM__LEARNING_RATE=1e-3``), plus the short form
   ``ECDCTR_STORE=s3://bucket/prefix`` for ``store.root``.

Unknown keys, wrong types and impossible values are rejected with a one-line
:class:`~ecdctr_pipeline.core.errors.ConfigError` naming the key. Secrets are
``SecretStr`` and are masked by :func:`render_settings`.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

import yaml
from pydantic import (
    BaseModel, ConfigDict, Field, PositiveInt, SecretStr, ValidationError, field_validator, model_validator,
)

from ecdctr_pipeline.core.errors import ConfigError
from ecdctr_pipeline.core.schema import DEFAULT_SPEC

ENV_PREFIX = "ECDCTR_"
ENV_CONFIG = "ECDCTR_CONFIG"
ENV_STORE = "ECDCTR_STORE"
ENV_PROFILE = "ECDCTR_PROFILE"
# ECDCTR_* variables of the process that are not settings: the console's log level (the images
# set ECDCTR_LOG_LEVEL=INFO), the recorded code version (artifacts.code_version), where a pod
# writes its step's JSON result for Airflow's XCom (cli/verbs.py) and a Spark pod's own name and
# address (its driver's, orchestration/commands.py), and the DAG run a step belongs to (recorded
# in the manifests it publishes, data/artifacts.py)
ENV_NOT_SETTINGS = ("ECDCTR_LOG_LEVEL", "ECDCTR_CODE_VERSION", "ECDCTR_RESULT_FILE", "ECDCTR_POD_NAME", "ECDCTR_POD_IP",
                    "ECDCTR_RUN_ID")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class StoreSettings(_Section):
    """Where tables and artifacts live: ``file://PATH`` (embedded) or ``s3://bucket/prefix``."""

    root: str = "file://./ecdctr-data"
    endpoint_url: str | None = None  # any S3-compatible endpoint; None = AWS / AWS_ENDPOINT_URL
    region: str = "us-east-1"
    access_key_id: SecretStr | None = None  # None = the usual AWS credential chain
    secret_access_key: SecretStr | None = None
    allow_http: bool = False  # delta-rs refuses plain-HTTP endpoints unless set
    local_staging_dir: str | None = None  # scratch for S3 uploads; None = system temp

    @field_validator("root")
    @classmethod
    def _check_root(cls, root: str) -> str:
        if not (root.startswith("file://") or root.startswith("s3://")):
            raise ValueError("must start with file:// or s3://")
        if root.startswith("s3://") and not root[len("s3://"):].strip("/"):
            raise ValueError("s3:// root needs a bucket name")
        if root.startswith("s3://"):
            bucket, _, prefix = root[len("s3://"):].partition("/")
            if not _BUCKET.fullmatch(bucket) or ".." in bucket:
                raise ValueError(f"the bucket name {bucket[:63]!r} is invalid (S3 bucket names are 3-63 lowercase "
                                 "letters, digits, dots and hyphens, starting and ending with a letter or digit)")
            if any(part in (".", "..") for part in prefix.split("/")):
                raise ValueError("the prefix after the bucket may not hold '.' or '..' segments")
        return root.rstrip("/") if len(root) > len("file:///") else root


class SparkSettings(_Section):
    master: str = "local[*]"
    app_name: str = "ecdctr"
    driver_memory: str = "2g"
    shuffle_partitions: int = Field(4, gt=0)
    # Folder of the pinned JVM jars (delta-spark, hadoop-aws, AWS SDK bundle; jvm/pom.xml).
    # None = the checkout's jvm/jars (made by `make jars`); "classpath" = already on Spark's
    # class path (the docker/spark image bakes them into /opt/spark/jars).
    jars_dir: str | None = None
    # A writer holds a lease on a feature table while it writes it; an older lease than this
    # is taken to belong to a writer that died (Delta-Spark's S3 log store is single-driver).
    writer_lease_s: int = Field(6 * 3600, gt=0)
    extra_conf: dict[str, str] = Field(default_factory=dict)


class CalendarSettings(_Section):
    """Window lengths of SPEC §2. Windows are half-open ``[start, end)`` in UTC days."""

    tpm_train_months: int = Field(6, gt=0)  # TPM trains on months M-6 .. M-1, in order
    tpm_snapshot_months: int = Field(3, gt=0)  # ... and snapshots after the last 3 of them
    cpm_window_days: int = Field(28, gt=0)  # CPM trains on natural data [W-28d, W)
    cpm_eval_tail_days: int = Field(1, gt=0)  # last day(s) of the CPM window held out for eval
    actr_window_days: int = Field(28, gt=0)  # A-CTR: ad data [D-28d, D) incl. the holdout
    actr_holdout_days: int = Field(1, gt=0)  # [D-1d, D) is the blessing holdout
    max_cpm_staleness_days: int = Field(8, ge=0)  # fallback CPM may be at most this old
    # days recorded as having no impressions (`ecdctr ingest --empty-day`) a window may contain
    # (a TPM month, a CPM or A-CTR window); an unrecorded gap always fails, naming the day
    max_empty_days: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "CalendarSettings":
        if self.tpm_snapshot_months > self.tpm_train_months:
            raise ValueError(
                f"tpm_snapshot_months ({self.tpm_snapshot_months}) must be <= "
                f"tpm_train_months ({self.tpm_train_months})"
            )
        if self.cpm_eval_tail_days >= self.cpm_window_days:
            raise ValueError("cpm_eval_tail_days must be smaller than cpm_window_days")
        if self.actr_holdout_days >= self.actr_window_days:
            raise ValueError("actr_holdout_days must be smaller than actr_window_days")
        if self.actr_window_days > self.cpm_window_days:
            # An A-CTR run on a Monday uses the CPM of that Monday, whose embedding months
            # end before month(W - cpm_window_days); a longer A-CTR window could reach into them.
            raise ValueError(
                f"actr_window_days ({self.actr_window_days}) must be <= cpm_window_days "
                f"({self.cpm_window_days}) so embedding months never overlap A-CTR data"
            )
        return self


class SchemaColumnSettings(_Section):
    """A free column of the raw log: an integer category with a vocabulary or hash buckets."""

    name: str
    type: Literal["int8", "int16", "int32", "int64"]
    vocab_size: PositiveInt | None = None  # ids 0 .. vocab_size-1
    hash_buckets: PositiveInt | None = None  # any integer, hashed mod hash_buckets by the model
    doc: str = ""


class RawSchemaSettings(_Section):
    """The raw log's columns by role (``core/schema.py``; README "Feature schema"). The fixed
    columns (event_time, user_id, item_id, category_id, click) are not declared; ``sources`` maps
    any column to its name in ingested files."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    version: PositiveInt
    sources: dict[str, str] = Field(default_factory=dict)
    user_profile: list[SchemaColumnSettings] = Field(default_factory=list)
    item_profile: list[SchemaColumnSettings] = Field(default_factory=list)
    context: list[SchemaColumnSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "RawSchemaSettings":
        from ecdctr_pipeline.core.schema import FeatureSchema

        FeatureSchema.from_spec(self.model_dump())  # a ValueError names the column
        return self


# ------------------------------------------------------------------ YAML, bounded
# A settings or schema file is small: a few hundred values. YAML aliases (``*a`` of an ``&a``
# anchor) may stand for whole sub-trees, so 300 bytes of nested aliases expand to hundreds of
# millions of values (a "billion laughs" file) once anything walks them. Anchors and aliases
# stay usable (a ``<<: *base`` merge), but a document whose aliases expand past this many
# values, or refer to themselves, is refused before anything reads it.
MAX_YAML_VALUES = 100_000


class YamlRefused(ValueError):
    """A YAML document refused before it is built (what is wrong, in words; never its text)."""


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents whose aliases expand too far (see above)."""

    def compose_document(self):
        node = super().compose_document()
        _expanded_size(node, {}, set(), MAX_YAML_VALUES)
        return node


def _expanded_size(node, sizes: dict[int, int], open_: set[int], limit: int) -> int:
    """Values ``node`` stands for with every alias expanded; raises :class:`YamlRefused` past
    ``limit`` or on an alias inside its own anchor. Each distinct node is walked once."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_:
        raise YamlRefused("it holds a YAML alias inside its own anchor (a recursive value)")
    open_.add(key)
    total = 1
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    for child in children:
        total += _expanded_size(child, sizes, open_, limit)
        if total > limit:
            raise YamlRefused(f"its YAML aliases expand to more than {limit} values (settings files hold a few "
                              "hundred; is it an alias bomb?)")
    open_.discard(key)
    sizes[key] = total
    return total


def yaml_load(text: str) -> Any:
    """``yaml.safe_load`` with the alias bound above (:class:`YamlRefused`)."""
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise YamlRefused("its values are nested too deeply") from None


def _read_schema_file(value: Any) -> Any:
    """``features.raw_schema`` given as a path: the YAML file's mapping."""
    if not isinstance(value, (str, os.PathLike)):
        return value
    path = Path(value)
    try:
        loaded = yaml_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"schema file not found: {path}") from None
    except YamlRefused as exc:
        raise ValueError(f"schema file {path} is refused: {exc}") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"schema file {path} is not readable YAML ({type(exc).__name__})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"schema file {path} must hold a mapping (name, version, user_profile, ...)")
    if not {"name", "version"} & {k for k in loaded if isinstance(k, str)}:  # not echoed: it may be any file
        raise ValueError(f"schema file {path} is not a feature schema: it has no name or version key")
    return loaded


class FeatureSettings(_Section):
    # the raw log's columns by role: a mapping, or the path of a YAML file holding one (relative
    # paths in a config file are relative to that file); default: the contract the project ships
    raw_schema: RawSchemaSettings = Field(default_factory=lambda: RawSchemaSettings.model_validate(DEFAULT_SPEC))
    # "spark": the Spark jobs (scales out; the default); "duckdb": the same features computed by
    # DuckDB SQL in-process (single machine), committed through the same delta-rs path
    engine: Literal["spark", "duckdb"] = "spark"
    max_seq_len: int = Field(50, gt=0)  # last N clicked items/categories before the impression
    history_days: int = Field(28, gt=0)  # how far back the behaviour sequence looks
    counter_windows_days: list[int] = Field(default_factory=lambda: [7, 28])
    # the behaviour sequence of ad rows: "ad" — the user's ad clicks only (each domain's features
    # come from its own raw table: an ad day extracts without the natural log, which is 10-100x
    # larger, and the ad tables do not change when natural data is corrected); "platform" — the
    # user's clicks in both domains (the sequence the CPM's attention was trained on; the natural
    # raw table must then cover the ad window and its history); "split" — the ad clicks as with
    # "ad", plus the natural clicks as a second sequence (src_hist_*: MiNet's input, Table 2;
    # the natural log is needed as with "platform"). Counters stay per domain.
    ad_history: Literal["ad", "platform", "split"] = "ad"
    # embedding rows of the complete model's id features (ids are bucketed as id mod n); a hashed
    # column of the schema may be listed too, overriding its hash_buckets (small test models)
    hash_buckets: dict[str, int] = Field(
        default_factory=lambda: {"user_id": 50_000, "item_id": 20_000, "category_id": 1_000})

    _schema_field = field_validator("raw_schema", mode="before")(_read_schema_file)

    @model_validator(mode="after")
    def _check(self) -> "FeatureSettings":
        if not self.counter_windows_days or any(d <= 0 for d in self.counter_windows_days):
            raise ValueError("counter_windows_days must be a non-empty list of positive days")
        missing = {"user_id", "item_id", "category_id"} - set(self.hash_buckets)
        if missing or any(v <= 0 for v in self.hash_buckets.values()):
            raise ValueError("hash_buckets needs positive sizes for user_id, item_id, category_id")
        schema = self.feature_schema()
        hashed = {c.name for c in schema.columns if c.hash_buckets}
        other = sorted(set(self.hash_buckets) - {"user_id", "item_id", "category_id"} - hashed)
        if other:
            raise ValueError(f"hash_buckets: {', '.join(other)} is not a hashed column of feature schema "
                             f"{schema.name!r} (hashed: {', '.join(sorted(hashed)) or 'none'})")
        return self

    def feature_schema(self):
        """The raw log's :class:`~ecdctr_pipeline.core.schema.FeatureSchema`."""
        from ecdctr_pipeline.core.schema import FeatureSchema

        return FeatureSchema.from_spec(self.raw_schema.model_dump())

    def buckets(self, name: str) -> int | None:
        """Embedding rows of a hashed column or id (``None``: a column with a vocabulary)."""
        if name in self.hash_buckets:
            return self.hash_buckets[name]
        return self.feature_schema().column(name).hash_buckets

    def source_sequence(self, domain: str) -> bool:
        """Whether ``domain``'s complete features carry the natural clicks as a sequence of their own."""
        return domain == "ad" and self.ad_history == "split"


class TPMSettings(_Section):
    embedding_dim: int = Field(16, gt=0)
    hidden_units: list[PositiveInt] = Field(default_factory=lambda: [64, 32], min_length=1)
    learning_rate: float = Field(1e-2, gt=0, allow_inf_nan=False)
    batch_size: int = Field(2048, gt=0)
    epochs_per_month: int = Field(1, gt=0)
    # the user and item vectors' dot product added to the MLP's logit (a factorisation-machine
    # term): without it the vectors carry almost none of the users' taste (README "TPM")
    user_item_dot: bool = True
    seed: int = 0


class CPMSettings(_Section):
    """The complete model (shared by CPM and A-CTR) and the CPM's training."""

    embedding_dim: int = Field(16, gt=0)
    hidden_units: list[PositiveInt] = Field(default_factory=lambda: [200, 80], min_length=1)
    cross_layers: int = Field(2, ge=1)
    attention_units: list[PositiveInt] = Field(default_factory=lambda: [36], min_length=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    # the historical block (modeling/layers/historical.py): months in which an id was not yet seen
    # are masked out of the self-attention and the pooling; month positions are an ablation
    hist_mask_unseen: bool = True
    hist_month_positions: bool = False
    # where the historical blocks enter the network: with the other features before the cross
    # network (E-CDCTR), or beside the MLP's last hidden layer, before the output (KEEP's
    # "knowledge plugging", Table 2's KEEP-style baseline)
    hist_plug: Literal["input", "last_mlp"] = "input"
    learning_rate: float = Field(5e-4, gt=0, allow_inf_nan=False)
    batch_size: int = Field(1024, gt=0)
    epochs: int = Field(3, gt=0)
    seed: int = 0


TRANSFER_POLICIES = ("none", "embeddings", "mlp_without_bn", "embeddings_and_mlp", "all_but_bn", "all")


class ACTRSettings(_Section):
    # CPM -> A-CTR warm start (modeling/transfer.py): what is restored from the CPM
    transfer_policy: Literal[TRANSFER_POLICIES] = "all_but_bn"
    learning_rate: float = Field(5e-4, gt=0, allow_inf_nan=False)
    batch_size: int = Field(512, gt=0)
    epochs: int = Field(4, gt=0)
    seed: int = 0
    bless_tolerance: float = Field(0.002, ge=0)  # GAUC may drop at most this vs the served model
    # the absolute floor (TFMA's value threshold beside its change threshold): a candidate whose
    # holdout GAUC is below it is rejected whatever is served, the first model included
    min_gauc: float = Field(0.5, ge=0, le=1)
    # a holdout whose GAUC covers less than this share of its impressions (users with both a click
    # and a non-click) cannot judge a model: the day's model is published as not evaluable, never
    # blessed (the served model stays), and an alert names the day and the coverage
    min_gauc_coverage: float = Field(0.02, ge=0, le=1)
    cpm_wait_timeout_s: int = Field(6 * 3600, gt=0)
    # the transfer itself on the gate (off by default: it trains a second model in train_actr):
    # a Target-only model (same network, random init, no TPM inputs, same window, seed and
    # budget) is trained and scored on the same holdout, and the candidate is blessed only if
    # its GAUC is also >= Target-only's - target_only_margin (both recorded in the blessing)
    bless_requires_target_only: bool = False
    target_only_margin: float = Field(0.0, ge=0)
    # the `transfer_harmful` alert (ecdctr evaluate actr, the DAG's evaluate step): over the
    # evaluation reports of the last transfer_harm_days days (the day included), when at least
    # half of them compared A-CTR with Target-only and the mean GAUC lift is below
    # -transfer_harm_margin, the day's evaluation alerts (one alert per evaluation run)
    transfer_harm_days: int = Field(7, ge=1, le=90)
    transfer_harm_margin: float = Field(0.01, ge=0)


class TrainingSettings(_Section):
    """How every trainer reads its window and which devices it uses (all tiers)."""

    # streaming input: rows are shuffled inside a bounded buffer (plus one record batch), files
    # are read this many rows at a time; peak memory follows these, not the window
    shuffle_buffer_rows: int = Field(65_536, gt=0)
    read_batch_rows: int = Field(8_192, gt=0)
    # a shard (one worker's files) whose decoded rows fit this budget is decoded once and kept in
    # memory across epochs (each epoch a fresh permutation of all its rows); larger shards stream
    # with the bounded shuffle above. 0: always stream.
    input_cache_mb: int = Field(1024, ge=0)
    # auto: multi_worker when TF_CONFIG / TRAINER_WORKER_HOSTS name several workers, mirrored
    # when the pod sees several GPUs, else one device
    distribution: Literal["auto", "none", "mirrored", "multi_worker"] = "auto"
    # early stopping of the complete-model trainers (CPM, A-CTR, Target-only, experiments'
    # baselines): the last N days of the training window are a validation slice, training stops
    # after `early_stopping_patience` epochs without a better validation loss, and the best
    # epoch's weights are kept (`epochs` is then the maximum). 0: train all epochs, no slice.
    validation_days: int = Field(0, ge=0)
    early_stopping_patience: int = Field(1, ge=0)
    # the validation slice grows back from the window's end past `validation_days` until it holds
    # this many clicks (never past half the window); 0: exactly `validation_days`
    validation_min_clicks: int = Field(0, ge=0)
    # after training, every BatchNorm layer's moving mean/variance is replaced by the population
    # statistics of the trained weights on up to this many training rows (modeling/batchnorm.py:
    # a short fine-tuning leaves the moving averages near their start); 0 keeps the averages
    bn_settle_rows: int = Field(100_000, ge=0)
    # the compiled train step (make bench-train measures both; README "Benchmarks"): XLA for the
    # whole step, and steps run per call of the traced function (fewer Python round trips)
    jit_compile: bool = False
    # adam: Keras's Adam (every embedding row updated each step); lazy_adam: a row-sparse update of
    # the embedding tables (modeling/optimizers.py: rows a batch does not look up keep their
    # moments) -- no measurable gain at small's 50k x 16 tables, for vocabularies of the paper's size
    optimizer: Literal["adam", "lazy_adam"] = "adam"
    steps_per_execution: int = Field(1, ge=1, le=1000)
    workers: int = Field(1, ge=1, le=64)  # Kubernetes mode: pods of a trainer step (an Indexed Job)
    worker_port: int = Field(2222, gt=0, lt=65536)  # the workers' collective port (headless Service)


class QualitySettings(_Section):
    ctr_bounds: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {"natural": (0.01, 0.5), "ad": (0.002, 0.3)}
    )
    volume_band: tuple[float, float] = (0.5, 2.0)  # day volume / trailing 7-day mean
    min_ad_users_known_natural: float = Field(0.5, ge=0, le=1)
    min_ad_items_known_natural: float = Field(0.5, ge=0, le=1)
    min_ad_users_known_embeddings: float = Field(0.3, ge=0, le=1)
    min_ad_items_known_embeddings: float = Field(0.3, ge=0, le=1)
    # the four cross-domain coverage checks above (ad users/items seen in the natural domain, in
    # the day's embedding set): `warn` reports the shares and logs a warning when one is below
    # its floor (ads and content often have disjoint catalogues: the TPM then knows ad users,
    # not ad items); `fail` makes such a check fail the gate like any other
    cross_domain: Literal["warn", "fail"] = "warn"

    @model_validator(mode="after")
    def _check(self) -> "QualitySettings":
        for dom, (lo, hi) in self.ctr_bounds.items():
            if not 0 <= lo < hi <= 1:
                raise ValueError(f"ctr_bounds.{dom} must satisfy 0 <= low < high <= 1")
        lo, hi = self.volume_band
        if not 0 <= lo < 1 < hi:
            raise ValueError("volume_band must satisfy 0 <= low < 1 < high")
        return self


class AlertSettings(_Section):
    notifiers: list[Literal["log", "webhook", "email", "slack", "teams", "pagerduty"]] = Field(
        default_factory=lambda: ["log"])
    webhook_url: SecretStr | None = None
    webhook_timeout_s: float = Field(10.0, gt=0)  # every HTTP notifier's timeout
    slack_webhook_url: SecretStr | None = None  # a Slack incoming webhook (its path is the token)
    teams_webhook_url: SecretStr | None = None  # a Teams Workflows / incoming webhook
    pagerduty_routing_key: SecretStr | None = None  # the Events API v2 integration key
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(25, gt=0, lt=65536)
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    email_from: str = "ecdctr@localhost"
    email_to: list[str] = Field(default_factory=list)
    # served_model_stale: when a day's A-CTR model is not blessed (the served one stays) and the
    # served version's A-CTR day is more than this many days before the run's day
    max_served_age_days: int = Field(3, ge=1)

    @field_validator("webhook_url", "slack_webhook_url", "teams_webhook_url", "pagerduty_events_url")
    @classmethod
    def _http_only(cls, url):
        """The notifiers POST JSON: an http(s) URL with a host (a secret's value is never echoed)."""
        from urllib.parse import urlparse

        if url is not None:
            parsed = urlparse((url.get_secret_value() if isinstance(url, SecretStr) else url).strip())
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                what = f"a {parsed.scheme}:// URL" if parsed.scheme else "a URL without a scheme"
                raise ValueError(f"must be an http:// or https:// URL with a host, not {what}")
        return url


class ServingSettings(_Section):
    model_name: str = "actr"
    grpc_target: str = "127.0.0.1:8500"
    rest_url: str = "http://127.0.0.1:8501"
    request_timeout_s: float = Field(5.0, gt=0)
    retries: int = Field(3, ge=0)
    keep_versions: int = Field(2, ge=1)  # served version + rollback target


class KubernetesSettings(_Section):
    """Production execution: training as GPU pods, Spark steps as spark-submit pods."""

    namespace: str = "ecdctr"
    service_account: str = "ecdctr"
    trainer_image: str = "ecdctr/trainer:0.1.0"
    spark_image: str = "ecdctr/spark:0.1.0"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    gpus: int = Field(1, ge=0)
    node_selector: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    tolerations: list[dict[str, str]] = Field(default_factory=lambda: [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}])
    trainer_resources: dict[str, dict[str, str]] = Field(default_factory=lambda: {
        "requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"cpu": "8", "memory": "32Gi"}})
    spark_resources: dict[str, dict[str, str]] = Field(default_factory=lambda: {
        "requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}})
    config_map: str = "ecdctr-config"  # mounted at /etc/ecdctr, ECDCTR_CONFIG points at it
    # headless Service the pods of multi-worker trainer Jobs resolve each other through (helm chart)
    worker_service: str = "ecdctr-trainer-workers"
    secret_env: str | None = "ecdctr-secrets"  # optional Secret with ECDCTR_* / AWS_* variables
    image_pull_secrets: list[str] = Field(default_factory=list)  # Secrets of a private registry
    # KubernetesPodOperator's waits: for a node to take the pod (a GPU node scaling up takes
    # minutes; the operator's own default is 120 s) and then for its containers to start (an
    # image of several GB being pulled)
    schedule_timeout_s: int = Field(1800, gt=0)
    startup_timeout_s: int = Field(900, gt=0)


class DockerSettings(_Section):
    """``orchestration.execution: docker``: every step a container of its image on one host's
    engine (Docker, or podman's Docker-compatible socket), through Airflow's Docker provider, with
    the command its Kubernetes pod would get (:mod:`orchestration.containers`)."""

    url: str = "unix:///var/run/docker.sock"  # podman: unix:///run/podman/podman.sock
    trainer_image: str = "ecdctr/trainer:0.1.0"
    spark_image: str = "ecdctr/spark:0.1.0"
    # a user-defined network the steps join: they reach the S3 endpoint, the Spark master and
    # each other (multi-worker training) by container name; None: the engine's default bridge
    network: str | None = None
    # the settings file on the engine's host, mounted read-only at /etc/ecdctr/config.yaml
    config_source: str | None = None
    # further bind mounts, "HOST_PATH:CONTAINER_PATH[:ro]" (a file:// store, a CA bundle)
    volumes: list[str] = Field(default_factory=list)
    # variables copied from the Airflow worker's environment into each step when set (never
    # rendered into the task's fields): credentials
    pass_env: list[str] = Field(default_factory=lambda: [
        "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION"])
    auto_remove: Literal["never", "success", "force"] = "success"  # failed steps' containers stay for inspection
    worker_timeout_s: int = Field(600, gt=0)  # multi-worker steps: how long the other workers may outlive worker 0

    @field_validator("volumes")
    @classmethod
    def _volumes(cls, v: list[str]) -> list[str]:
        for spec in v:
            parts = spec.split(":")
            if len(parts) not in (2, 3) or not all(parts[:2]) or (len(parts) == 3 and parts[2] not in ("ro", "rw")):
                raise ValueError(f"volume {spec!r}: expected HOST_PATH:CONTAINER_PATH[:ro|rw]")
        return v


class OrchestrationSettings(_Section):
    execution: Literal["in_process", "kubernetes", "docker"] = "in_process"
    owner: str = "ml-platform"
    start_date: str = "2026-01-01"
    catchup: bool = False
    retries: int = Field(2, ge=0)
    retry_delay_s: int = Field(300, gt=0)
    max_retry_delay_s: int = Field(3600, gt=0)
    max_active_runs: int = Field(1, gt=0)
    task_timeout_s: int = Field(4 * 3600, gt=0)
    sensor_poke_interval_s: int = Field(300, gt=0)
    sensor_timeout_s: int = Field(12 * 3600, gt=0)
    # deferrable: the triggerer waits (no worker slot held); reschedule: the slot is freed between
    # pokes; poke: the worker waits (short waits only)
    sensor_mode: Literal["deferrable", "reschedule", "poke"] = "deferrable"
    compare_target_only: bool = True  # A-CTR DAG: also train Target-only for the evaluation report
    # the Airflow pool every trainer step (GPU) runs in: the pool's slots bound how many train at
    # once across the three DAGs (create it: `airflow pools set gpu 2 "ecdctr GPU trainers"`);
    # None: Airflow's default_pool. A missing pool keeps the tasks queued: create it first
    trainer_pool: str | None = None
    # the A-CTR run must finish within this many hours after it was queued (an Airflow
    # DeadlineAlert from DAGRUN_QUEUED_AT, checked by the scheduler, its callback run by the
    # triggerer): a missed one alerts `deadline_missed`; backfill runs are not alerted (a backfill
    # queues many days at once). None: no deadline
    actr_deadline_h: float | None = Field(20.0, gt=0)
    # an OpenLineage run event per published artifact (data/lineage.py): an http(s) base URL (the
    # HTTP transport's: events go to <url>/api/v1/lineage) or a file:// path (one JSON event a
    # line); None: off. Best effort: an unreachable backend never fails a run
    openlineage_url: str | None = None
    openlineage_namespace: str = "ecdctr"
    openlineage_timeout_s: float = Field(5.0, gt=0)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    docker: DockerSettings = Field(default_factory=DockerSettings)

    @field_validator("openlineage_url")
    @classmethod
    def _lineage_url(cls, url: str | None) -> str | None:
        from urllib.parse import urlparse

        if url is not None:
            p = urlparse(url.strip())
            if p.scheme not in ("http", "https", "file") or (p.scheme != "file" and not p.hostname) \
                    or (p.scheme == "file" and not p.path):
                raise ValueError("must be an http(s):// URL with a host or a file:// path")
        return url

    @model_validator(mode="after")
    def _check_docker(self) -> "OrchestrationSettings":
        if self.execution == "docker" and not self.docker.config_source:
            raise ValueError("orchestration.execution is docker but orchestration.docker.config_source (the settings "
                             "file on the engine's host, mounted into every step) is not set")
        return self

    @field_validator("start_date", mode="before")
    @classmethod
    def _iso_day(cls, v):
        if isinstance(v, dt.date):  # YAML reads an unquoted 2026-01-01 as a date
            return v.isoformat()
        if v is not None:
            try:
                dt.date.fromisoformat(v)
            except ValueError:
                raise ValueError("expected YYYY-MM-DD") from None
        return v


# Hyper-parameter profiles: values a profile sets unless the YAML file or the environment set
# them. ``laptop`` is the defaults of the sections above; ``paper`` is the paper's Section 4.4.
PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "laptop": {},
    "paper": {
        "tpm": {"embedding_dim": 16, "learning_rate": 0.025, "batch_size": 500_000},
        "cpm": {"embedding_dim": 16, "learning_rate": 5e-4, "batch_size": 10_000},
        "actr": {"learning_rate": 5e-4, "batch_size": 10_000},
    },
}


class Settings(_Section):
    # which hyper-parameter profile fills the values not set explicitly (see PROFILES)
    profile: Literal["laptop", "paper"] = "laptop"
    store: StoreSettings = Field(default_factory=StoreSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    calendar: CalendarSettings = Field(default_factory=CalendarSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    tpm: TPMSettings = Field(default_factory=TPMSettings)
    cpm: CPMSettings = Field(default_factory=CPMSettings)
    actr: ACTRSettings = Field(default_factory=ACTRSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)

    @model_validator(mode="after")
    def _check_execution(self) -> "Settings":
        if self.orchestration.execution == "docker" and self.spark.master.startswith("k8s://"):
            raise ValueError(f"orchestration.execution is docker but spark.master is {self.spark.master!r}: "
                             "containers run Spark local[...] or against a spark:// master")
        return self

    @model_validator(mode="before")
    @classmethod
    def _apply_profile(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        profile = PROFILES.get(data.get("profile", "laptop"))
        if not profile:  # laptop, or an unknown name (rejected by the field's validation)
            return data
        return _deep_merge(profile, data)  # explicit values win over the profile's


SECTIONS = tuple(k for k in Settings.model_fields if k != "profile")
# "section.key" of every secret (SecretStr) setting
SECRET_KEYS = frozenset(f"{name}.{key}" for name in SECTIONS
                        for key, f in Settings.model_fields[name].annotation.model_fields.items()
                        if "SecretStr" in str(f.annotation))


EXCERPT_CHARS = 40  # a value or key shown in a settings error is cut to this


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """A short excerpt of ``value`` for a message: its repr, built with bounded work (a nested
    value is summarised, never expanded) and cut to ``limit`` characters."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = r.maxlong = limit + 2
    text = " ".join(r.repr(value).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _format_validation_error(err: ValidationError, source: str) -> str:
    errors = err.errors(include_url=False, include_context=False)
    first = errors[0]
    key = ".".join(str(p) for p in first["loc"]) or "<root>"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    got = first.get("input")
    secret = any(key == k or key.startswith(k + ".") for k in SECRET_KEYS)  # a secret's value is never echoed
    shown = "" if secret or first["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) \
        else f" (got {excerpt(got)})"
    if len(key) > EXCERPT_CHARS:  # a key is text of the file too (a line of a file that is not settings)
        key = key[:EXCERPT_CHARS - 1] + "…"
    more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid setting {key} from {source}: {msg[:200]}{shown}{more}"


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Turn ``ECDCTR_SECTION__KEY=value`` variables into a nested dict."""
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG or name in ENV_NOT_SETTINGS:
            continue
        if name == ENV_STORE:
            tree.setdefault("store", {})["root"] = raw
            continue
        if name == ENV_PROFILE:
            tree["profile"] = raw
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        if len(path) < 2 or path[0] not in SECTIONS:
            raise ConfigError(
                f"invalid setting from environment {name}: expected ECDCTR_<SECTION>__<KEY> "
                f"with SECTION one of {', '.join(SECTIONS)}"
            )
        if ".".join(path) in SECRET_KEYS:  # secrets are taken as written: '#x' is a password, not a comment
            value = raw
        else:
            try:
                value = yaml_load(raw) if raw != "" else ""
            except YamlRefused as exc:
                raise ConfigError(f"invalid setting from environment {name}: {exc}") from None
            except (yaml.YAMLError, ValueError):  # e.g. 2026-13-01 read as an impossible date
                value = raw
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build the effective settings: defaults, then the YAML file, then the environment."""
    environ = os.environ if environ is None else environ
    config_file = config_file or environ.get(ENV_CONFIG) or None
    data: dict[str, Any] = {}
    source = "defaults"
    if config_file:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml_load(path.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
        except YamlRefused as exc:
            raise ConfigError(f"config file {path} is refused: {exc}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"config file {path} is not valid YAML{where}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections")
        if loaded and not any(isinstance(k, str) and (k in Settings.model_fields or (
                isinstance(v, dict) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,39}", k))) for k, v in loaded.items()):
            # no section, nor anything shaped like a misspelt one: e.g. a Python file whose first
            # line reads as a key. Say so, without echoing the file's text
            raise ConfigError(f"config file {path} is not a settings file: none of its {len(loaded)} top-level "
                              f"key(s) is a settings section ({', '.join(Settings.model_fields)})")
        data = loaded
        source = str(path)
        schema = (data.get("features") or {}).get("raw_schema") if isinstance(data.get("features"), dict) else None
        if isinstance(schema, str) and not Path(schema).is_absolute():  # relative to the config file
            data["features"] = {**data["features"], "raw_schema": str(path.parent / schema)}
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None
    env = env_overrides(environ)
    if env:
        data = _deep_merge(data, env)
        source = "environment" if source == "defaults" else f"{source} + environment"
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def settings_dict(settings: Settings, *, mask: bool = True) -> dict[str, Any]:
    """Settings as plain JSON-able data; secrets are masked unless ``mask=False``."""

    def convert(value: Any) -> Any:
        if isinstance(value, SecretStr):
            return "**********" if mask else value.get_secret_value()
        if isinstance(value, BaseModel):
            return {k: convert(getattr(value, k)) for k in type(value).model_fields}
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        return value

    return convert(settings)


def render_settings(settings: Settings) -> str:
    """YAML of the effective settings with secrets masked (``ecdctr config show``)."""
    return yaml.safe_dump(settings_dict(settings, mask=True), sort_keys=False)
