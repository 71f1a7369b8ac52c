"""The thin package the workbook's notebooks import, one module per concern: data, models, training,
evaluation, and running the notebooks (workbook, cli)."""
