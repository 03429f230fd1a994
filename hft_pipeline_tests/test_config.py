import datetime as dt
from pathlib import Path

import pytest

from hft_pipeline.config import CONFIG_FILE_NAME, PipelineSettings, write_config_file


def test_load_environment_overrides_defaults_and_parses_types(tmp_path: Path):
    settings = PipelineSettings.load(
        {
            "HFT_HOME": str(tmp_path),
            "HFT_WINDOW_DAYS": "7",
            "HFT_SYMBOLS": "es, zn ,NQ",
            "HFT_END": "2024-03-01",
            "HFT_LEARNING_RATE": "0.01",
        }
    )

    assert settings.training.window_days == 7
    assert settings.data.symbols == ("ES", "ZN", "NQ")
    assert settings.data.end == dt.date(2024, 3, 1)
    assert settings.training.learning_rate == 0.01
    assert settings.raw_url == tmp_path.resolve().as_uri() + "/bucket"


def test_load_config_file_round_trips_and_environment_wins(tmp_path: Path):
    written = PipelineSettings.load({"HFT_HOME": str(tmp_path)}).with_overrides(
        training={"window_days": 5, "epochs": 3}, data={"start": dt.date(2024, 2, 1)}
    )
    write_config_file(written, tmp_path / CONFIG_FILE_NAME)

    from_file = PipelineSettings.load({"HFT_HOME": str(tmp_path)})
    with_env = PipelineSettings.load({"HFT_HOME": str(tmp_path), "HFT_EPOCHS": "9"})

    assert from_file == written
    assert with_env.training.epochs == 9
    assert with_env.training.window_days == 5


def test_load_bad_value_names_the_setting(tmp_path: Path):
    with pytest.raises(ValueError, match="window_days='thirty'"):
        PipelineSettings.load({"HFT_HOME": str(tmp_path), "HFT_WINDOW_DAYS": "thirty"})


def test_load_unknown_key_in_file_is_refused(tmp_path: Path):
    (tmp_path / CONFIG_FILE_NAME).write_text("[training]\nwindow = 5\n")

    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['window'\]"):
        PipelineSettings.load({"HFT_HOME": str(tmp_path)})
