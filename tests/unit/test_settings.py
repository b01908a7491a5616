import pytest

from ecdctr_pipeline.core.errors import ConfigError
from ecdctr_pipeline.core.settings import Settings, env_overrides, load_settings, render_settings, settings_dict


def test_embedded_default_needs_no_file():
    s = load_settings(environ={})
    assert s.store.root == "file://./ecdctr-data"
    assert s.calendar.cpm_window_days == 28
    assert s.cpm.embedding_dim == 16 and s.cpm.learning_rate == 5e-4
    assert s.actr.transfer_policy == "all_but_bn"


def test_yaml_then_env_override(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("cpm:\n  learning_rate: 0.01\n  batch_size: 64\nstore:\n  root: s3://bucket/x\n")
    s = load_settings(f, environ={"ECDCTR_CPM__LEARNING_RATE": "0.002", "ECDCTR_TPM__HIDDEN_UNITS": "[8, 4]"})
    assert s.cpm.learning_rate == 0.002  # env wins over the file
    assert s.cpm.batch_size == 64  # file value kept
    assert s.tpm.hidden_units == [8, 4]
    assert s.store.root == "s3://bucket/x"


def test_short_store_variable():
    assert load_settings(environ={"ECDCTR_STORE": "s3://bkt/p"}).store.root == "s3://bkt/p"


def test_config_env_variable_names_file(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("actr:\n  epochs: 3\n")
    assert load_settings(environ={"ECDCTR_CONFIG": str(f)}).actr.epochs == 3


@pytest.mark.parametrize("yaml_text, key", [
    pytest.param("cpm:\n  learning_rat: 0.1\n", "cpm.learning_rat", id="unknown-key"),
    pytest.param("nosection:\n  a: 1\n", "nosection", id="unknown-section"),
    pytest.param("cpm:\n  batch_size: lots\n", "cpm.batch_size", id="wrong-type"),
    pytest.param("calendar:\n  cpm_window_days: 0\n", "calendar.cpm_window_days", id="zero-window"),
    pytest.param("actr:\n  transfer_policy: some\n", "actr.transfer_policy", id="bad-literal"),
    pytest.param("store:\n  root: hdfs://x\n", "store.root", id="bad-root"),
    pytest.param("calendar:\n  actr_window_days: 40\n", "calendar", id="actr-longer-than-cpm"),
    pytest.param("tpm:\n  learning_rate: .inf\n", "tpm.learning_rate", id="infinite-learning-rate"),
    pytest.param("tpm:\n  hidden_units: [-5, 0]\n", "tpm.hidden_units.0", id="negative-units"),
    pytest.param("cpm:\n  attention_units: []\n", "cpm.attention_units", id="no-attention-units"),
    pytest.param("actr:\n  min_gauc_coverage: 1.5\n", "actr.min_gauc_coverage", id="coverage-above-one"),
])
def test_bad_values_are_one_line_errors_naming_the_key(tmp_path, yaml_text, key):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as exc:
        load_settings(f, environ={})
    msg = str(exc.value)
    assert "\n" not in msg
    assert f"invalid setting {key}" in msg


def test_bad_env_key_named():
    with pytest.raises(ConfigError, match="ECDCTR_NOPE"):
        load_settings(environ={"ECDCTR_NOPE": "1"})
    # what the images set beside the settings is not read as one (every command would fail)
    assert load_settings(environ={"ECDCTR_LOG_LEVEL": "INFO", "ECDCTR_CODE_VERSION": "0.1.0+gabc"}) == load_settings(environ={})
    with pytest.raises(ConfigError, match="cpm.epochs"):
        load_settings(environ={"ECDCTR_CPM__EPOCHS": "-1"})


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "none.yaml", environ={})
    f = tmp_path / "bad.yaml"
    f.write_text("cpm: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(f, environ={})


def test_secrets_masked():
    s = load_settings(environ={"ECDCTR_ALERTS__WEBHOOK_URL": "https://hooks.example/T0/secret-token",
                               "ECDCTR_ALERTS__SMTP_PASSWORD": "hunter2",
                               "ECDCTR_STORE__SECRET_ACCESS_KEY": "AKIAVERYSECRET"})
    text = render_settings(s)
    for secret in ("secret-token", "hunter2", "AKIAVERYSECRET"):
        assert secret not in text
        assert secret not in repr(s)
    assert settings_dict(s, mask=False)["alerts"]["smtp_password"] == "hunter2"
    assert "**********" in text


def test_env_overrides_parse_yaml_scalars():
    tree = env_overrides({"ECDCTR_CPM__EPOCHS": "3", "ECDCTR_SPARK__MASTER": "spark://h:7077", "OTHER": "x"})
    assert tree == {"cpm": {"epochs": 3}, "spark": {"master": "spark://h:7077"}}


def test_every_section_present():
    assert set(Settings.model_fields) >= {"store", "spark", "calendar", "tpm", "cpm", "actr", "quality", "alerts", "serving"}


def test_hyper_parameter_profiles(tmp_path):
    from ecdctr_pipeline.core.errors import ConfigError

    laptop = load_settings(environ={})
    assert laptop.profile == "laptop" and laptop.tpm.learning_rate == 1e-2 and laptop.cpm.batch_size == 1024
    paper = load_settings(environ={"ECDCTR_PROFILE": "paper"})
    assert (paper.tpm.learning_rate, paper.tpm.batch_size, paper.tpm.embedding_dim) == (0.025, 500_000, 16)
    assert (paper.cpm.learning_rate, paper.cpm.batch_size) == (5e-4, 10_000)
    assert (paper.actr.learning_rate, paper.actr.batch_size) == (5e-4, 10_000)
    assert paper.cpm.hidden_units == laptop.cpm.hidden_units  # what the paper does not fix keeps its default
    cfg = tmp_path / "c.yaml"
    cfg.write_text("profile: paper\ntpm:\n  batch_size: 4096\n")
    s = load_settings(cfg, environ={"ECDCTR_ACTR__BATCH_SIZE": "2048"})
    assert (s.tpm.batch_size, s.tpm.learning_rate, s.actr.batch_size) == (4096, 0.025, 2048)  # explicit wins
    with pytest.raises(ConfigError, match="invalid setting profile from environment"):
        load_settings(environ={"ECDCTR_PROFILE": "cloud"})


def test_secrets_are_taken_as_written_and_never_echoed(tmp_path):
    s = load_settings(environ={"ECDCTR_STORE__SECRET_ACCESS_KEY": "8675309123", "ECDCTR_ALERTS__SMTP_PASSWORD": "#x"})
    assert s.store.secret_access_key.get_secret_value() == "8675309123"  # not read as a YAML int
    assert s.alerts.smtp_password.get_secret_value() == "#x"  # not read as a YAML comment
    f = tmp_path / "c.yaml"
    f.write_text("store:\n  secret_access_key: [8675309123, 42]\n")
    with pytest.raises(ConfigError, match="invalid setting store.secret_access_key") as exc:
        load_settings(f, environ={})
    assert "8675309123" not in str(exc.value) and "got" not in str(exc.value)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b'store:\n  root: "file:///tmp/x\xff\xfe"\n')
    with pytest.raises(ConfigError, match=r"config file .*c.yaml is not UTF-8 text \(byte 29\)"):
        load_settings(f, environ={})
