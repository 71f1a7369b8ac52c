"""The thin package the workbook's notebooks import, one module per concern: data, models, training,
evaluation, and running the notebooks (workbook, cli)."""

import os

from .progress import silence_widget_bars_in_batch_runs

# oneDNN, the CPU kernels under PyTorch, keeps up to 1,024 compiled kernels, one per operation and input shape.
# Length-grouped batches have many shapes, so notebook 04's kernel grew to 6.2 GB while it trained; 16 kept it at
# 4.7 GB with the same metrics and about the same time (docs/troubleshooting.md). Set before the first kernel is built,
# so importing the helpers first is enough; a value the user set is kept.
ONEDNN_CACHE_VARIABLE, ONEDNN_CACHE_CAPACITY = "ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16"
if "DNNL_PRIMITIVE_CACHE_CAPACITY" not in os.environ:  # oneDNN's older name for it, which the new one would override
    os.environ.setdefault(ONEDNN_CACHE_VARIABLE, ONEDNN_CACHE_CAPACITY)

silence_widget_bars_in_batch_runs()  # an executed copy keeps no frozen progress bar (see progress.py)
