"""The thin package the workbook's notebooks import, one module per concern: data, models, training,
evaluation, and running the notebooks (workbook, cli)."""

from .progress import silence_widget_bars_in_batch_runs

silence_widget_bars_in_batch_runs()  # an executed copy keeps no frozen progress bar (see progress.py)
