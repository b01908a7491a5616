"""TPM, monthly on the 1st: extract features/tpm for months M-6..M-1 → quality gate →
train the tiny model month by month → publish embedding set M (months M-3..M-1)."""

from airflow.sdk import DAG

from ecdctr_pipeline.orchestration import airflow_support as af
from ecdctr_pipeline.orchestration.steps import TIERS

TIER = TIERS["tpm"]
DAG_ID = TIER.dag_id
SCHEDULE = TIER.schedule
TAGS = ["ecdctr", "tpm", "monthly"]
S = af.settings()

with DAG(dag_id=DAG_ID, schedule=SCHEDULE, tags=TAGS, doc_md=__doc__, **af.dag_kwargs(S, TIER.name)):
    af.render_tier(TIER.name, S)
