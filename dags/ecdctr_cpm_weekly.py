"""CPM, weekly on Monday W: extract features/complete/natural for [W-28d, W) → quality gate →
wait for embedding set month(W-28d) (non-overlap checked) → train → evaluate on the tail."""

from airflow.sdk import DAG

from ecdctr_pipeline.orchestration import airflow_support as af
from ecdctr_pipeline.orchestration.steps import TIERS

TIER = TIERS["cpm"]
DAG_ID = TIER.dag_id
SCHEDULE = TIER.schedule
TAGS = ["ecdctr", "cpm", "weekly"]
S = af.settings()

with DAG(dag_id=DAG_ID, schedule=SCHEDULE, tags=TAGS, doc_md=__doc__, **af.dag_kwargs(S, TIER.name)):
    af.render_tier(TIER.name, S)
