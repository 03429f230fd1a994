"""hft_pipeline: raw Databento archives -> SLIM parquet -> features -> roll30 models -> artifacts."""
