import datetime as dt

import pytest

from ecdctr_pipeline.core import paths
from ecdctr_pipeline.core.calendar import Month


def test_layout():
    assert paths.raw_table("natural") == "raw/natural"
    assert paths.complete_features("ad") == "features/complete/ad"
    assert paths.tpm_features() == "features/tpm"
    assert paths.tpm_set(Month(2026, 10)) == "artifacts/tpm/sets/M=2026-10"
    assert paths.cpm_checkpoint(dt.date(2026, 11, 23)) == "artifacts/cpm/checkpoints/W=2026-11-23"
    assert paths.actr_model("2026-11-24") == "artifacts/actr/models/D=2026-11-24"
    assert paths.serving_version(7) == "serving/actr/7"
    assert paths.quality_result("raw/ad", "2026-11-24") == "quality/raw/ad/2026-11-24"
    assert paths.manifest_key("artifacts/tpm/sets/M=2026-10") == "artifacts/tpm/sets/M=2026-10/MANIFEST.json"
    assert paths.join("s3://b/p/", "raw/ad") == "s3://b/p/raw/ad"


@pytest.mark.parametrize("call", [
    lambda: paths.raw_table("video"),
    lambda: paths.tpm_set("2026-1"),
    lambda: paths.cpm_checkpoint("2026/11/23"),
    lambda: paths.serving_version(0),
])
def test_bad_ids_rejected(call):
    with pytest.raises(ValueError):
        call()


def test_kind_of():
    assert paths.kind_of("artifacts/tpm/sets/M=2026-10") == "tpm_embedding_set"
    assert paths.kind_of("artifacts/cpm/checkpoints/W=2026-11-23") == "cpm_checkpoint"
    assert paths.kind_of("serving/actr/12") == "serving_version"
    assert paths.kind_of("artifacts/tpm/sets/M=2026-10/a-1") is None
