"""Wall time and peak memory of a whole `workbook run` (every notebook, the given parameters), and the speed of
the machine it ran on.

Peak memory is the largest resident set of any process of the run (the notebook kernels included), as the
operating system reports it for waited-for child processes. The machine's speed varies between sessions (the
same 2-core VM has trained at half the speed of another day), so the script also times a bare
sentence-transformers training run (bench_training's, 20 steps) before and after the workbook, and prints the
wall time scaled to the reference speed at which the workbook's 30-minute budget was set.

    python benchmarks/bench_workbook.py [workbook run arguments, e.g. --smoke]
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_training import bare_run, smoke_pairs  # noqa: E402

# bench_training's bare trainer, examples/s, in the session of the run behind benchmarks/results/cpu-default-all
# before this one (2026-11-28), where the default run took 24.9 minutes
REFERENCE_EXAMPLES_PER_S = 37.7


def machine_speed() -> float:
    """Examples/s of a bare 20-step MNRL training run on this machine, now."""
    with tempfile.TemporaryDirectory() as work:
        return bare_run(smoke_pairs(), batch_size=32, steps=20, output_dir=work)[0]  # fp32: the reference speed


def main() -> None:
    before = machine_speed()
    started = time.perf_counter()
    completed = subprocess.run([sys.executable, "-m", "helpers.cli", "run", *sys.argv[1:]])
    seconds = time.perf_counter() - started
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    speed = (before + machine_speed()) / 2
    print(
        f"machine speed: {speed:.1f} examples/s of a bare MNRL training run (before {before:.1f}), "
        f"{speed / REFERENCE_EXAMPLES_PER_S:.2f}x the reference {REFERENCE_EXAMPLES_PER_S}"
    )
    print(
        f"workbook run {' '.join(sys.argv[1:])}: exit {completed.returncode}, {seconds / 60:.1f} minutes wall, "
        f"peak memory {peak_gb:.2f} GB; at the reference speed about "
        f"{seconds / 60 * speed / REFERENCE_EXAMPLES_PER_S:.1f} minutes"
    )
    sys.exit(completed.returncode)


if __name__ == "__main__":
    main()
