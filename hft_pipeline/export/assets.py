"""Export stage: each window's model -> a self-contained inference artifact (TorchScript,
scaler, feature list, config); `production_model` points at the newest verified one."""

import json

import dagster as dg

from hft_pipeline.config import PipelineSettings
from hft_pipeline.export.torchscript import export_artifact, verify_artifact
from hft_pipeline.layout import Layout, atomic_file
from hft_pipeline.partitions import PipelinePartitions, parse_date_key
from hft_pipeline.training.assets import trained_window

# TorchScript and eager outputs may differ by float rounding only.
MAX_EXPORT_DIFFERENCE = 1e-5
VERIFICATION_FILE = "verification.json"


def build_export_assets(
    settings: PipelineSettings, partitions: PipelinePartitions
) -> list[dg.AssetsDefinition]:
    layout = Layout(settings.home)
    window_days = settings.training.window_days

    @dg.asset(
        group_name="export",
        partitions_def=partitions.trading_days,
        deps=["roll30_model"],
        check_specs=[
            dg.AssetCheckSpec(
                "torchscript_matches_eager", asset="inference_artifact", blocking=True
            )
        ],
        kinds={"pytorch"},
    )
    def inference_artifact(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
        """The window's model as a TorchScript file plus the scaler, ordered feature list and
        config needed to run it without this project's code."""
        end = parse_date_key(context.partition_key)
        start, window_dir = trained_window(
            layout, partitions, end, window_days, f"inference_artifact[{context.partition_key}]"
        )
        artifact_dir = layout.artifact_dir(start, end)
        manifest = export_artifact(window_dir, artifact_dir)
        difference = verify_artifact(artifact_dir, window_dir)
        passed = difference <= MAX_EXPORT_DIFFERENCE
        with atomic_file(artifact_dir / VERIFICATION_FILE) as temporary:
            temporary.write_text(
                json.dumps({"max_abs_difference": difference, "passed": passed}, indent=1)
            )
        return dg.MaterializeResult(
            metadata={
                "path": dg.MetadataValue.path(str(artifact_dir)),
                "files": dg.MetadataValue.json(manifest),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="torchscript_matches_eager",
                    passed=passed,
                    description=f"max |TorchScript - eager| <= {MAX_EXPORT_DIFFERENCE}",
                    metadata={"max_abs_difference": difference},
                )
            ],
        )

    @dg.asset(group_name="export", deps=[inference_artifact])
    def production_model() -> dg.MaterializeResult:
        """Pointer to the newest inference artifact whose TorchScript export was verified."""
        verified = sorted(
            (
                path.parent
                for path in (layout.home / "artifacts").glob(f"*/{VERIFICATION_FILE}")
                if json.loads(path.read_text())["passed"]
            ),
            key=lambda folder: folder.name.rsplit("_", 1)[-1],  # the window's end date
        )
        if not verified:
            raise dg.Failure("production_model: no verified inference_artifact exists yet")
        newest = verified[-1]
        with atomic_file(layout.production_pointer) as temporary:
            temporary.write_text(json.dumps({"artifact": str(newest), "window": newest.name}))
        return dg.MaterializeResult(
            metadata={
                "artifact": dg.MetadataValue.path(str(newest)),
                "window": dg.MetadataValue.text(newest.name),
                "verified_artifacts": dg.MetadataValue.int(len(verified)),
            }
        )

    return [inference_artifact, production_model]
