"""A-CTR, daily on D: extract features/complete/ad for [D-28d, D) → quality gate → wait for the
CPM of the week (staleness fallback) → fine-tune from the checkpoint the sensor chose →
evaluate vs Target-only → bless → export the serving version. A rejected model is kept for
inspection and never exported."""

from airflow.sdk import DAG

from ecdctr_pipeline.orchestration import airflow_support as af
from ecdctr_pipeline.orchestration.steps import TIERS

TIER = TIERS["actr"]
DAG_ID = TIER.dag_id
SCHEDULE = TIER.schedule
TAGS = ["ecdctr", "actr", "daily"]
S = af.settings()

with DAG(dag_id=DAG_ID, schedule=SCHEDULE, tags=TAGS, doc_md=__doc__, **af.dag_kwargs(S, TIER.name)):
    af.render_tier(TIER.name, S)
