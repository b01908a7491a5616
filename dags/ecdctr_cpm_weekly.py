"""CPM, weekly on Monday W: extract features/complete/natural for [W-28d, W) → quality gate →
wait for embedding set month(W-28d) (non-overlap checked) → train → evaluate on the tail."""

from airflow.sdk import DAG

from ecdctr_pipeline.orchestration import airflow_support as af
from ecdctr_pipeline.orchestration import commands
from ecdctr_pipeline.orchestration.sensors import EmbeddingSetSensor

DAG_ID = "ecdctr_cpm_weekly"
SCHEDULE = "0 0 * * 1"
TAGS = ["ecdctr", "cpm", "weekly"]
S = af.settings()
O = S.orchestration

with DAG(dag_id=DAG_ID, schedule=SCHEDULE, tags=TAGS, doc_md=__doc__, **af.dag_kwargs(S)):
    extract = af.step("extract_natural_features", S, kind="spark", call="extract_complete", args=("natural",),
                      command=commands.spark_command("extract_complete", S.spark.master,
                                                     ["--domain", "natural", "--as-of", af.TEMPLATE_DS]))
    gate = af.step("quality_gate", S, kind="job", call="gate_cpm",
                   command=commands.gate_command("cpm", af.TEMPLATE_DS))
    wait = EmbeddingSetSensor(task_id="wait_for_embedding_set", mode=O.sensor_mode,
                              poke_interval=O.sensor_poke_interval_s, timeout=O.sensor_timeout_s, retries=0)
    train = af.step("train_cpm", S, kind="trainer", call="train", args=("cpm",),
                    command=commands.train_command("cpm", af.TEMPLATE_DS), outlets=[af.asset(S, *af.ASSETS["cpm"])])
    evaluate = af.step("evaluate_cpm", S, kind="job", call="evaluate_cpm",
                       command=commands.evaluate_command(af.TEMPLATE_DS, "cpm"))
    extract >> gate >> wait >> train >> evaluate
