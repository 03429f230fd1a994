"""Assembles the code location: assets, checks, jobs, schedules, sensors and resources."""

import dagster as dg

from hft_pipeline.automation import build_automation
from hft_pipeline.config import PipelineSettings
from hft_pipeline.evaluation.assets import build_evaluation_assets
from hft_pipeline.export.assets import build_export_assets
from hft_pipeline.features.assets import build_features_assets
from hft_pipeline.ingest.assets import build_ingest_assets
from hft_pipeline.partitions import PipelinePartitions
from hft_pipeline.resources import raw_store_resource
from hft_pipeline.training.assets import build_training_assets


def build_partitions(settings: PipelineSettings) -> PipelinePartitions:
    return PipelinePartitions.from_settings(settings.data)


def build_definitions(settings: PipelineSettings) -> dg.Definitions:
    partitions = build_partitions(settings)
    assets = [
        *build_ingest_assets(settings, partitions),
        *build_features_assets(settings, partitions),
        *build_training_assets(settings, partitions),
        *build_evaluation_assets(settings, partitions),
        *build_export_assets(settings, partitions),
    ]
    sensors, schedules, jobs = build_automation(settings, partitions)
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        sensors=sensors,
        schedules=schedules,
        resources={"raw_store": raw_store_resource(settings.raw_url)},
        metadata={"settings": dg.MetadataValue.json(settings.as_metadata())},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """Loaded by `dagster dev` / `dagster definitions validate` through workspace.yaml."""
    return build_definitions(PipelineSettings.load())
