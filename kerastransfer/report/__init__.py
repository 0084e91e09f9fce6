"""Training reports: metrics (scikit-learn), plots, and the report files.

- `metrics`: `classification_metrics`, `format_classification_report`;
- `plots`: `plot_learning_curves`, `plot_confusion_matrix`;
- `writer`: `write_report`, which `fit(report_dir=...)` calls;
- `clinical`: ROC/PR AUC, thresholds, sensitivity/specificity, bootstrap CIs,
  calibration (binary and multilabel), ROC/PR/reliability PNGs;
- `thresholds`: `choose_model_threshold` (stores a rule's threshold in the model);
- `explain`: Grad-CAM heatmaps, overlays, and the report's per-class overlays;
- `segmentation`, `detection`: those tasks' report tables and plots.
"""

from kerastransfer.report.metrics import (
    classification_metrics,
    format_classification_report,
)
from kerastransfer.report.plots import plot_confusion_matrix, plot_learning_curves
from kerastransfer.report.thresholds import choose_model_threshold
from kerastransfer.report.writer import write_report

__all__ = ["write_report", "classification_metrics", "plot_learning_curves",
           "plot_confusion_matrix", "format_classification_report",
           "choose_model_threshold"]
