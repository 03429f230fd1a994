import datetime as dt
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hft_pipeline.cli import main
from hft_pipeline.config import DEFAULT_RAW_KEY_PATTERN
from hft_pipeline.ingest.slim import read_slim_metadata
from hft_pipeline.ingest.slim_schema import META_BAR_INTERVAL_NS


def test_simulate_writes_one_archive_per_utc_day_and_symbol(tmp_path, capsys):
    main(
        [
            "simulate",
            "--out",
            str(tmp_path),
            "--start",
            "2024-01-05",
            "--end",
            "2024-01-08",
            "--symbols",
            "es,zn",
            "--signal",
            "0.5",
            "--seed",
            "1",
        ]
    )

    keys = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.zip"))
    days = sorted({key.split("/")[2] for key in keys})
    assert all(re.match(DEFAULT_RAW_KEY_PATTERN, key) for key in keys)
    # Fri session: Thu evening + Fri; Mon session: Sun evening + Mon; no Saturday archive.
    assert days == ["20240104", "20240105", "20240107", "20240108"]
    assert {key.split("/")[3] for key in keys} == {"ES", "ZN"}
    assert f"wrote {len(keys)} archives" in capsys.readouterr().out


def test_bad_date_is_refused_with_usage_error(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--out", "x", "--start", "2024-13-01", "--end", "2024-01-02"])

    assert "'2024-13-01' is not a date" in capsys.readouterr().err


def test_run_with_too_short_range_names_the_problem(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_CONFIG", "/dev/null")

    with pytest.raises(SystemExit) as stopped:
        main(
            [
                "run",
                "--raw-url",
                tmp_path.as_uri(),
                "--start",
                "2024-01-02",
                "--end",
                "2024-01-04",
                "--window",
                "5",
            ]
        )

    assert stopped.value.code == 2
    assert "holds 3 trading days" in capsys.readouterr().err


def test_features_command_computes_one_slim_file(tmp_path, capsys, monkeypatch):
    from hft_pipeline.ingest.slim import build_slim_day
    from hft_pipeline.partitions import TradingCalendar
    from hft_pipeline.simulate import simulate_bucket

    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_CONFIG", "/dev/null")
    day = dt.date(2024, 1, 3)
    archives = simulate_bucket(tmp_path / "bucket", day, day, ["ES"], events_per_second=0.2)
    slim = build_slim_day(
        archives, TradingCalendar("CME_Equity").session(day), "ES", tmp_path / "slim.parquet"
    ).path

    main(["features", str(slim), "--out", str(tmp_path / "f.parquet")])

    features = pq.read_table(tmp_path / "f.parquet")
    labels = pq.read_table(tmp_path / "labels_f.parquet")
    assert features.num_rows == labels.num_rows == 16_560  # 23 h of 5 s bars
    assert "bars x" in capsys.readouterr().out


def test_features_command_refuses_a_file_that_is_not_slim(tmp_path, capsys):
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1]}), other)

    with pytest.raises(SystemExit):
        main(["features", str(other), "--out", str(tmp_path / "f.parquet")])

    assert "not a SLIM file" in capsys.readouterr().err


def test_ingest_and_r2_commands_round_trip_a_simulated_bucket(s3_bucket, tmp_path, capsys):
    from hft_pipeline.simulate import simulate_bucket
    from hft_pipeline_tests.conftest import upload_folder

    client, bucket = s3_bucket
    day = dt.date(2024, 1, 9)
    simulate_bucket(tmp_path / "bucket", day, day, ["ES"], events_per_second=0.05)
    upload_folder(client, bucket, tmp_path / "bucket")

    main(["r2", "ls", "--url", f"s3://{bucket}", "--prefix", "raw/"])
    listing = capsys.readouterr().out
    main(
        [
            "r2",
            "download",
            "--url",
            f"s3://{bucket}",
            "--prefix",
            "raw/",
            "--dest",
            str(tmp_path / "copy"),
        ]
    )
    archives = sorted((tmp_path / "copy").rglob("*.zip"))
    main(["ingest", *map(str, archives), "--out", str(tmp_path / "slim"), "--symbol", "ES"])
    ingested = capsys.readouterr().out

    assert listing.count("raw/2024/") == 2  # the evening before, and the day itself
    assert len(archives) == 2
    assert "live_20240109_ES_SLIM.parquet" in ingested
    with pytest.raises(SystemExit):
        main(["r2", "upload", "--url", f"s3://{bucket}", "--prefix", "raw/x", str(archives[0])])
    assert "raw/" in capsys.readouterr().err


def _train_home(tmp_path, monkeypatch, horizons=(12, 24)):
    """A home holding three days of tiny synthetic features, and its settings file."""
    from hft_pipeline.config import write_config_file
    from hft_pipeline_tests.training.test_matrix import tiny_settings, write_window_home

    write_window_home(tmp_path, horizons=horizons)
    config = write_config_file(tiny_settings(tmp_path, epochs=1), tmp_path / "hft_pipeline.toml")
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_CONFIG", str(config))
    return tmp_path / "fit_data" / "roll30" / "live" / "20240102_20240104"


def test_ingest_command_reads_a_bar_file_with_the_stated_options(shared_data, tmp_path, capsys):
    bars = shared_data / "cme-1min-6e" / "6EH4.XCME_1min_bars_20240101_20240131.csv.gz"
    out = tmp_path / "slim"
    main(
        ["ingest", str(bars), "--out", str(out), "--calendar", "CMEGlobex_FX"]
        + ["--bar-interval-s", "60", "--bar-label", "close"]
    )
    printed = capsys.readouterr().out.splitlines()
    written = sorted(out.rglob("*.parquet"))
    assert len(printed) == len(written) >= 20  # one SLIM file per session of January 2024
    metadata = read_slim_metadata(written[0])
    assert metadata[META_BAR_INTERVAL_NS] == str(60 * 10**9)


def test_train_list_only_prints_entries_and_folders_without_training(tmp_path, capsys, monkeypatch):
    window_dir = _train_home(tmp_path, monkeypatch)

    main(
        ["train", "--window", "2024-01-04", "--symbols", "es,zn", "--horizons", "24", "--list-only"]
    )

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"lstm_multitask_ES_h24  {window_dir / 'matrix' / 'lstm_multitask_ES_h24'}",
        f"lstm_multitask_ZN_h24  {window_dir / 'matrix' / 'lstm_multitask_ZN_h24'}",
    ]
    assert not window_dir.exists()


def test_train_writes_each_entry_and_prints_its_metrics(tmp_path, capsys, monkeypatch):
    window_dir = _train_home(tmp_path, monkeypatch)

    main(["train", "--window", "2024-01-04", "--symbols", "ZN", "--horizons", "12,24"])

    printed = capsys.readouterr().out
    for name in ("lstm_multitask_ZN_h12", "lstm_multitask_ZN_h24"):
        assert (window_dir / "matrix" / name / "metrics.json").is_file()
        assert name in printed
    assert "accuracy" in printed and "baseline_logistic_accuracy" in printed


def test_train_window_ending_on_a_holiday_is_refused(tmp_path, capsys, monkeypatch):
    _train_home(tmp_path, monkeypatch)

    with pytest.raises(SystemExit) as stopped:
        main(["train", "--window", "2024-01-01", "--list-only"])

    assert stopped.value.code == 2
    assert "2024-01-01 is not a trading day of CME_Equity" in capsys.readouterr().err


def test_train_horizon_without_labels_names_it(tmp_path, capsys, monkeypatch):
    _train_home(tmp_path, monkeypatch, horizons=(12,))

    with pytest.raises(SystemExit):
        main(["train", "--window", "2024-01-04", "--horizons", "12,36"])

    assert "label horizon 36 bars is not in" in capsys.readouterr().err
