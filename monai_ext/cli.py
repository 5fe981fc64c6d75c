"""Command line: ``python -m monai_ext <command> ...`` (built with ``fire``; ``--help`` on any command).

Commands:
    synthesize          write simulated ultrasound images (the embedded default data) and print the throughput
    inspect-checkpoint  name a checkpoint's layout and list what it holds
    convert-checkpoint  convert any known layout into this project's self-describing file
    make-datalist       write one fold of a dataset protocol as the classification bundle's JSON datalist
    cross-validate      fine-tune and test every fold for several starting points; mean +/- std table
    bundle-path         print the folder of a bundle shipped with the package (for --config_file when installed)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import fire


def synthesize(
    out: str,
    num: int = 1000,
    seed: int = 0,
    size: int = 256,
    geometry: str | None = None,
    screen_capture: bool = True,
    fmt: str = "png",
    lesion: str | None = "random",
    workers: int | None = None,
) -> None:
    """Simulate ``num`` B-mode images into ``out`` and print images per second.

    Args:
        out: output folder.
        num: number of images.
        seed: base seed (image i uses seed (seed, i)).
        size: image side in pixels.
        geometry: linear, curvilinear, or None for a mix.
        screen_capture: burn in text, calipers, colour bar and depth scale.
        fmt: png, dcm or nii.
        lesion: oval, irregular, cyst, None, or random.
        workers: processes (default: all cores).
    """
    from monai_ext.data.synthetic import SimulatorConfig, generate_dataset

    config = SimulatorConfig(size=size, geometry=geometry, screen_capture=screen_capture)
    record = generate_dataset(out, num, seed, config, fmt, lesion, workers)
    print(f"{len(record['files'])} images in {out}: {record['images_per_second']:.1f} images/s")


def inspect_checkpoint(path: str, sha256: str | None = None) -> None:
    """Read a checkpoint safely and report its layout, parameter count and top-level key groups."""
    from monai_ext.networks.checkpoints import read_checkpoint, to_state_dict

    checkpoint = read_checkpoint(path, sha256)
    layout, state_dict = to_state_dict(checkpoint)
    groups = sorted({k.split(".")[0] for k in state_dict})
    info = {
        "path": path,
        "layout": layout,
        "tensors": len(state_dict),
        "parameters": int(sum(v.numel() for v in state_dict.values())),
        "groups": groups,
        "arch": checkpoint.get("arch") if layout == "monai_ext" else None,
    }
    print(json.dumps(info, indent=1, default=str))


def convert_checkpoint(src: str, dst: str, arch: str = "mae_vit_base_patch16_dec512d8b", img_size: int = 224,
                       in_chans: int = 3, norm_pix_loss: bool = False, sha256: str | None = None) -> None:
    """Load ``src`` (any known MAE layout) into ``arch`` strictly and save it with its architecture record."""
    from monai_ext.networks.checkpoints import load_mae_weights, save_model_checkpoint
    from monai_ext.networks.mae import build_mae

    model = build_mae(arch, img_size=img_size, in_chans=in_chans, norm_pix_loss=norm_pix_loss)
    report = load_mae_weights(model, src, sha256)
    save_model_checkpoint(dst, model, "mae", {"arch": arch, "converted_from": str(Path(src).name)})
    print(f"{src} -> {dst}: {report.summary()}")


def _as_list(value: object) -> list[str]:
    """``"a,b"``, ``("a", "b")`` (fire parses ``a,b`` into a tuple) or a single value -> ``["a", "b"]``."""
    if isinstance(value, (list, tuple)):
        return [str(v).strip() for v in value]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def make_datalist(protocol: str, root: str, out: str, fold: int = 0, folds: int | None = None) -> None:
    """Write fold ``fold`` of a protocol (busbra, mmotu, gist514, folder, csv) to ``out`` (JSON).

    Args:
        protocol: dataset protocol name.
        root: the dataset folder as distributed (a CSV file for ``csv``).
        out: JSON file for ``--datalist_file``.
        fold: which split.
        folds: BUS-BRA 5 or 10; k for folder/csv.
    """
    from monai_ext.data.downstream import load_protocol, write_split

    kwargs = {"folds": folds} if folds is not None else {}
    proto = load_protocol(protocol, root, **kwargs)
    if not 0 <= fold < len(proto.splits):
        raise ValueError(f"fold must be in [0, {len(proto.splits)}), got {fold!r}")
    split = proto.splits[fold]
    write_split(split, proto.class_names, out)
    sizes = ", ".join(f"{k} {len(v)}" for k, v in split.items())
    print(f"{proto.name} fold {fold}: {sizes} -> {out}")


def cross_validate(
    protocol: str,
    out: str,
    root: str | None = None,
    init_checkpoint: str | None = None,
    methods: str | tuple[str, ...] = "pretrained,random,cnn",
    folds: str | tuple[int, ...] | None = None,
    cache_dir: str = "demo_output/cache",
    per_class: int = 60,
    max_train: int = 100,
    tracking: str | None = None,
    tracking_uri: str | None = None,
    **overrides: object,
) -> None:
    """Fine-tune and test every fold; print and write the mean +/- std table (``OUT/cv_table.md``).

    Args:
        protocol: synthetic, subtle, busbra, mmotu, gist514, folder or csv.
        out: results folder.
        root: dataset folder (not for synthetic).
        init_checkpoint: pretrained weights for the "pretrained" start.
        methods: comma-separated starts: pretrained, random, cnn.
        folds: comma-separated fold indices (default all).
        cache_dir: where the synthetic benchmark is generated.
        per_class: synthetic benchmark images per class.
        max_train: at most this many labelled training images per synthetic fold.
        tracking: MLflow tracking settings (bundles/usf_mae_classify/configs/mlflow_tracking.yaml): a parent run
            with one nested run per fold.
        tracking_uri: MLflow server or store (default MLFLOW_TRACKING_URI, else SQLite under OUT).
        overrides: any classification-bundle override, e.g. --arch ... --epochs 20 --image_size 128.
    """
    from monai_ext.apps.crossval import cross_validate as run_cv
    from monai_ext.apps.crossval import protocol_by_name

    kwargs = {"per_class": per_class, "max_train": max_train} if protocol in ("synthetic", "subtle") else {}
    proto = protocol_by_name(protocol, root, cache_dir, **kwargs)
    fold_list = [int(f) for f in _as_list(folds)] if folds not in (None, "") else None
    record = run_cv(proto, out, _as_list(methods), init_checkpoint, fold_list, {"cache_dir": cache_dir, **overrides},
                    tracking, tracking_uri)
    print(record["table"])


def prepare_corpus(
    root: str,
    out: str,
    size: int = 256,
    workers: int = 1,
    frame_stride: int = 1,
    slice_axis: int = 2,
    slice_stride: int = 1,
    modality: str | None = None,
    dedup_threshold: int = 4,
    exclude_datasets: object = (),
    evaluation: object = (),
    files_per_chunk: int = 64,
    crop_fov: bool = True,
) -> None:
    """Ingest ROOT/<dataset>/... into a memory-mapped cache at OUT (resumable: rerun the same command).

    Args:
        root: folder with one sub-folder per dataset.
        out: cache folder (chunks, manifest.csv, kept.npy, report.json, report.png).
        size: side of the cached square frames.
        workers: parallel processes.
        frame_stride, slice_axis, slice_stride: how cine loops and volumes are cut into frames.
        modality: keep only DICOM files of this Modality, e.g. US.
        dedup_threshold: perceptual-hash distance for near-duplicates (-1: exact duplicates only).
        exclude_datasets: dataset folder names to leave out, comma-separated.
        evaluation: evaluation folders whose images must not be in the corpus, comma-separated.
        files_per_chunk: files per unit of work and of resuming.
        crop_fov: crop to the DICOM region or the detected field of view.
    """
    from monai_ext.data.corpus import CorpusOptions
    from monai_ext.data.corpus import prepare_corpus as prepare
    from monai_ext.data.frames import FrameOptions

    frames = FrameOptions(frame_stride, slice_axis, slice_stride, modality)
    options = CorpusOptions(size=size, crop_fov=crop_fov, files_per_chunk=files_per_chunk, frames=frames,
                            dedup_threshold=dedup_threshold)
    report = prepare(root, out, options, workers, _as_list(exclude_datasets), _as_list(evaluation))
    print(f"{report['kept']} of {report['frames']} frames kept; removed: {report['removed']}; "
          f"skipped files: {len(report['skipped_files'])} (reasons in {out}/report.json, overview in {out}/report.png)")


def bundle_path(name: str) -> None:
    """Print the folder of bundle ``name`` (usf_mae_pretrain or usf_mae_classify) that came with this package.

    After ``pip install``: ``python -m monai.bundle run --config_file "$(monai-ext bundle-path usf_mae_classify)/
    configs/train.yaml" --ckpt_dir ... --output_dir ... --cache_dir ...`` from any folder.
    """
    from monai_ext.apps.bundle_support import bundle_path as locate

    try:
        print(locate(name))
    except ValueError as e:
        print(f"monai_ext bundle-path: {e}", file=sys.stderr)
        raise SystemExit(2) from None


COMMANDS = {
    "synthesize": synthesize,
    "inspect-checkpoint": inspect_checkpoint,
    "convert-checkpoint": convert_checkpoint,
    "make-datalist": make_datalist,
    "cross-validate": cross_validate,
    "prepare-corpus": prepare_corpus,
    "bundle-path": bundle_path,
}


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``python -m monai_ext`` and the ``monai-ext`` script."""
    fire.Fire(COMMANDS, command=argv if argv is not None else sys.argv[1:], name="monai_ext")


if __name__ == "__main__":
    main()
