"""The step registry: what every renderer (DAGs, pods, backfill) relies on."""

from __future__ import annotations

import datetime as dt

import pytest

from ecdctr_pipeline.cli.verbs import build_parser
from ecdctr_pipeline.core.errors import EcdctrError
from ecdctr_pipeline.app import backfill
from ecdctr_pipeline.orchestration import commands, steps

XCOMS = {"wait_for_cpm": {"cpm_checkpoint": "2026-11-23", "fallback": False}}


@pytest.mark.parametrize("tier", list(steps.TIERS))
def test_every_step_renders_to_an_argv_the_cli_accepts(tier):
    t = steps.TIERS[tier]
    names = [s.name for s in t.steps]
    assert len(set(names)) == len(names)
    for s in t.steps:
        argv = steps.render(s.argv, "2026-11-23", XCOMS)
        assert argv[-1] == "--json" and "{" not in " ".join(argv), s.name  # a JSON result for XCom
        args = build_parser().parse_args(argv)
        assert args.as_of == "2026-11-23"
        if s.kind == "sensor":
            assert argv[0] == "check" and s.retries == 0 and s.timeout_s is not None
        if s.kind == "branch":
            assert argv[0] == "check" and s.condition
        if s.force_flag:
            assert build_parser().parse_args([*argv, "--force"]).force is True
    assert t.steps[1].name == "quality_gate" and t.steps[1].retries == 0  # a gate right after extraction


def test_pod_commands_wrap_the_same_argv():
    argv = ["extract", "complete", "--domain", "ad", "--as-of", "{{ ds }}", "--json"]
    assert commands.pod_command("spark", argv, spark_master="spark://m:7077") == [
        "spark-submit", "--master", "spark://m:7077", "/opt/ecdctr/spark_jobs/ecdctr_cli.py", *argv]
    assert commands.pod_command("job", argv, spark_master="x") == ["ecdctr", *argv]
    with pytest.raises(ValueError, match="a sensor step does not run in a pod"):
        commands.pod_command("sensor", argv, spark_master="x")


def test_render_needs_the_upstream_result():
    argv = steps.TIERS["actr"].step("train_actr").argv
    assert steps.render(argv, "2026-11-24", XCOMS)[3:6] == ["2026-11-24", "--cpm", "2026-11-23"]
    with pytest.raises(KeyError, match="'wait_for_cpm' has not run"):
        steps.render(argv, "2026-11-24", {})


def test_step_definitions_are_checked():
    with pytest.raises(ValueError, match="unknown kind 'gpu'"):
        steps.Step("x", "gpu", ("plan",), doc="")
    with pytest.raises(ValueError, match="condition is required for, and only for, branch steps"):
        steps.Step("x", "branch", ("check", "blessed"), doc="")


def test_backfill_plan_is_months_then_mondays_then_days():
    runs = backfill.plan_range(dt.date(2026, 10, 30), dt.date(2026, 11, 3), ("actr", "cpm", "tpm"))
    assert [(t, d.isoformat()) for t, d in runs] == [
        ("tpm", "2026-11-01"), ("cpm", "2026-11-02"),
        *[("actr", f"2026-{d}") for d in ("10-30", "10-31", "11-01", "11-02", "11-03")]]
    with pytest.raises(EcdctrError, match="unknown tier"):
        backfill.plan_range(dt.date(2026, 11, 1), dt.date(2026, 11, 2), ("gpu",))
    with pytest.raises(EcdctrError, match="before --from"):
        backfill.plan_range(dt.date(2026, 11, 2), dt.date(2026, 11, 1), ("tpm",))
