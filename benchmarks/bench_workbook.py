"""Wall time and peak memory of a whole `workbook run` (every notebook, the given parameters).

Peak memory is the largest resident set of any process of the run (the notebook kernels included), as the
operating system reports it for waited-for child processes.

    python benchmarks/bench_workbook.py [workbook run arguments, e.g. --smoke]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time


def main() -> None:
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "helpers.cli", "run", *sys.argv[1:]])
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    print(f"workbook run {' '.join(sys.argv[1:])}: exit {completed.returncode}, {seconds / 60:.1f} minutes wall, "
          f"peak memory {peak_gb:.2f} GB")
    sys.exit(completed.returncode)


if __name__ == "__main__":
    main()
