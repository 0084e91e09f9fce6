"""Training reports: metrics and plots written after `fit()`."""

from kerastransfer.report.metrics import *  # noqa: F401,F403
from kerastransfer.report.metrics import __all__  # noqa: F401
