"""`kerastransfer predict`: top-k classes of image files with a .keras or .onnx
model (a .onnx model never imports TensorFlow)."""

from __future__ import annotations

from collections.abc import Sequence

import click

from kerastransfer.cli._common import (
    PROGRESS_MIN_FILES,
    echo_json,
    import_tensorflow_quietly,
    is_quiet,
    model_kind,
    stderr_progress,
)


class KerasPredictor:
    """Predicts with a .keras model; decodes files exactly as `OnnxPredictor`.

    Args:
        path: the `.keras` file.
    """

    def __init__(self, path: str):
        import_tensorflow_quietly()
        from kerastransfer.saving import load_model

        self.model = load_model(path)
        self.class_names = list(self.model.class_names)
        self.input_shape = tuple(getattr(self.model, "image_shape", ()))
        self.skipped: list[tuple[str, str]] = []

    def predict(self, images):
        """Probabilities of float32 RGB [0, 255] images `(n, h, w, 3)`."""
        import numpy as np

        return np.asarray(self.model.predict_on_batch(
            np.asarray(images, dtype="float32")))

    def predict_files(self, paths: Sequence[str], top_k: int = 5) -> list[dict]:
        """`[{"path", "top_k": [(class, probability)], "probabilities"}]` for the
        readable files; unreadable ones go to `self.skipped`. The decoding and
        ranking of `OnnxPredictor.predict_files` (`runtime/files.py`)."""
        from kerastransfer.runtime import predict_image_files

        results, self.skipped = predict_image_files(
            self.predict, list(paths), image_size=self.input_shape[:2],
            class_names=self.class_names, top_k=top_k, batch_size=max(1, len(paths)),
            channels=self.input_shape[-1] if len(self.input_shape) == 3 else 3)
        return results


def open_predictor(model_path: str):
    """The predictor of a .onnx or .keras model: its task's (the hook table in
    `cli/tasks.py`), else an `OnnxPredictor` / `KerasPredictor` (image
    classification; an `OnnxPredictor` becomes its task's for other files)."""
    kind = model_kind(model_path, "'MODEL'", (".keras", ".onnx"))
    from kerastransfer.cli.tasks import open_task_predictor

    if kind == ".onnx":
        from kerastransfer.runtime import OnnxPredictor

        return open_task_predictor(model_path) or OnnxPredictor(model_path)
    predictor = KerasPredictor(model_path)
    return open_task_predictor(model_path, predictor.model) or predictor


@click.command()
@click.argument("model_path", metavar="MODEL", type=click.Path(exists=True,
                                                               dir_okay=False))
@click.argument("images", nargs=-1, required=True,
                type=click.Path(exists=True))
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32,
              show_default=True)
@click.option("--text-column", default="text", show_default=True,
              help="Text models: the column of IMAGES' .csv files holding the "
                   "text (other files: one text per line).")
@click.option("--masks-dir", type=click.Path(file_okay=False), default=None,
              help="Segmentation models: folder for the mask PNGs (one per "
                   "image, value = class).  [default: masks]")
@click.option("--detections-dir", type=click.Path(file_okay=False), default=None,
              help="Detection models: folder for detections.json and one "
                   "annotated PNG per image.  [default: detections]")
@click.option("--score-threshold", type=click.FloatRange(0, 1), default=0.25,
              show_default=True, help="Detection models: the lowest score kept.")
@click.option("--iou-threshold", type=click.FloatRange(0, 1), default=0.5,
              show_default=True, help="Detection models: the NMS IoU threshold.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON (with every class's probability).")
def predict(model_path, images, top_k, batch_size, text_column, masks_dir,
            detections_dir, score_threshold, iou_threshold, as_json):
    """Classify IMAGES (files or folders) with a .keras or .onnx MODEL.

    A .onnx model runs on onnxruntime without importing TensorFlow. Unreadable
    files are reported on stderr and skipped; the command fails (exit 1) only
    when no image could be read.

    \b
    Examples:
      kerastransfer predict model.onnx cat.jpg dog.jpg
      kerastransfer predict model.keras photos/ --top-k 3 --json
      kerastransfer predict text.onnx reviews.csv --text-column review

    A text model (docs/text.md) reads texts from .csv files (--text-column)
    or plain text files (one text per line).
    """
    from kerastransfer.runtime import list_image_files
    from kerastransfer.runtime.files import FILE_EXTENSIONS

    predictor = open_predictor(model_path)
    extensions = FILE_EXTENSIONS
    if getattr(predictor, "kind", "image") == "segmentation":  # mask PNGs
        from kerastransfer.cli.segmentation import predict_segmentation

        return predict_segmentation(predictor, images, masks_dir, as_json)
    if getattr(predictor, "kind", "image") == "detection":  # boxes, annotated PNGs
        from kerastransfer.cli.detection import predict_detections

        return predict_detections(predictor, images, detections_dir,
                                  score_threshold=score_threshold,
                                  iou_threshold=iou_threshold,
                                  batch_size=batch_size, as_json=as_json)
    if getattr(predictor, "kind", "image") == "text":  # IMAGES are .csv/.txt files
        from kerastransfer.cli.text import predict_texts

        return predict_texts(predictor, images, text_column=text_column,
                             top_k=top_k, batch_size=batch_size, as_json=as_json)
    if getattr(predictor, "kind", "image") == "audio":  # IMAGES are audio files
        from kerastransfer.runtime.audio import AUDIO_EXTENSIONS as extensions
        from kerastransfer.runtime.audio import list_audio_files as list_image_files
    files = list_image_files(images)
    if not files:
        raise click.BadParameter(
            "No image files found (a folder is searched for "
            f"{'/'.join(extensions)} files). "
            f"Received: {' '.join(images)}", param_hint="'IMAGES'",
        )
    top_k = min(top_k, len(predictor.class_names))
    chunks = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    results: list[dict] = []
    skipped: list[tuple[str, str]] = []

    def run(chunk):
        results.extend(predictor.predict_files(chunk, top_k=top_k))
        skipped.extend(getattr(predictor, "skipped", []) or [])

    if len(files) >= PROGRESS_MIN_FILES and not is_quiet():
        with stderr_progress(chunks, label="Predicting") as bar:
            for chunk in bar:
                run(chunk)
    else:
        for chunk in chunks:
            run(chunk)
    if not results:
        raise click.ClickException(
            f"None of the {len(files)} file(s) is a readable image."
        )
    if as_json:
        echo_json([
            {"path": r["path"],
             "top_k": [{"class_name": c, "probability": p} for c, p in r["top_k"]],
             "probabilities": dict(zip(
                 predictor.class_names, (float(v) for v in r["probabilities"]),
                 strict=True))}
            for r in results
        ] + [{"path": p, "error": reason} for p, reason in skipped])
        return
    for item in results:
        ranked = ", ".join(f"{c} {p:.3f}" for c, p in item["top_k"])
        click.echo(f"{item['path']}: {ranked}")
