"""A-CTR, daily on D: extract features/complete/ad for [D-28d, D) → quality gate → wait for the
CPM of the week (staleness fallback) → fine-tune → evaluate vs Target-only → bless → export
the serving version. A rejected model is kept for inspection and never exported."""

from airflow.sdk import DAG, task

from ecdctr_pipeline.orchestration import airflow_support as af
from ecdctr_pipeline.orchestration import commands
from ecdctr_pipeline.orchestration.sensors import CPMCheckpointSensor

DAG_ID = "ecdctr_actr_daily"
SCHEDULE = "0 0 * * *"
TAGS = ["ecdctr", "actr", "daily"]
S = af.settings()
O = S.orchestration

with DAG(dag_id=DAG_ID, schedule=SCHEDULE, tags=TAGS, doc_md=__doc__, **af.dag_kwargs(S)):
    extract = af.step("extract_ad_features", S, kind="spark", call="extract_complete", args=("ad",),
                      command=commands.spark_command("extract_complete", S.spark.master,
                                                     ["--domain", "ad", "--as-of", af.TEMPLATE_DS]))
    gate = af.step("quality_gate", S, kind="job", call="gate_actr",
                   command=commands.gate_command("actr", af.TEMPLATE_DS))
    wait = CPMCheckpointSensor(task_id="wait_for_cpm", mode=O.sensor_mode, poke_interval=O.sensor_poke_interval_s,
                               timeout=max(O.sensor_timeout_s, S.actr.cpm_wait_timeout_s + O.sensor_poke_interval_s),
                               retries=0)
    train = af.step("train_actr", S, kind="trainer", call="train", args=("actr",),
                    command=commands.train_command("actr", af.TEMPLATE_DS), outlets=[af.asset(S, *af.ASSETS["actr"])])
    evaluate = af.step("evaluate", S, kind="trainer", call="evaluate_actr", command=commands.evaluate_command(af.TEMPLATE_DS))

    @task.short_circuit(task_id="bless")
    def bless(ds=None):
        from ecdctr_pipeline.orchestration import tasks

        return tasks.is_blessed(ds)

    export = af.step("export_serving", S, kind="trainer", call="export", command=commands.export_command(af.TEMPLATE_DS),
                     outlets=[af.asset(S, *af.ASSETS["serving"])])
    extract >> gate >> wait >> train >> evaluate >> bless() >> export
