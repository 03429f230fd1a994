"""hft_pipeline: raw archives -> SLIM parquet -> features -> roll30 models -> artifacts."""
