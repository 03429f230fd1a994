import re

import pytest

from hft_pipeline.cli import main
from hft_pipeline.config import DEFAULT_RAW_KEY_PATTERN


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
