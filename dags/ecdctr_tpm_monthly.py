"""TPM, monthly on the 1st: extract features/tpm for months M-6..M-1 → quality gate →
train the tiny model month by month → publish embedding set M (months M-3..M-1)."""

from airflow.sdk import DAG

from ecdctr_pipeline.orchestration import airflow_support as af
from ecdctr_pipeline.orchestration import commands

DAG_ID = "ecdctr_tpm_monthly"
SCHEDULE = "0 0 1 * *"
TAGS = ["ecdctr", "tpm", "monthly"]
S = af.settings()

with DAG(dag_id=DAG_ID, schedule=SCHEDULE, tags=TAGS, doc_md=__doc__, **af.dag_kwargs(S)):
    extract = af.step("extract_tpm_features", S, kind="spark", call="extract_tpm",
                      command=commands.spark_command("extract_tpm", S.spark.master, ["--as-of", af.TEMPLATE_DS]))
    gate = af.step("quality_gate", S, kind="job", call="gate_tpm",
                   command=commands.gate_command("tpm", af.TEMPLATE_DS))
    train = af.step("train_tpm", S, kind="trainer", call="train", args=("tpm",),
                    command=commands.train_command("tpm", af.TEMPLATE_DS), outlets=[af.asset(S, *af.ASSETS["tpm"])])
    extract >> gate >> train
