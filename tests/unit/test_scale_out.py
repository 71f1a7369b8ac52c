"""Notebook 15's scale-out pieces: the DDP script's counts and checkpoints, the reindex projection, and the
`workbook reindex-ray` command joining a Ray cluster by its address (the notebook's smoke run covers the local
Ray, the 2-process training runs, the killed run and the killed worker)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from helpers import cli
from helpers.data import RetrievalData, save_beir
from helpers.sources import parse_icd10cm
from helpers.distributed import (
    build_parser,
    latest_checkpoint,
    launch_command,
    negatives_per_anchor,
    read_run,
    settings_from,
    false_negative_steps,
)
from helpers.ray_indexing import projected_hours, projected_hours_as_table_grows, writer_seconds
from helpers.training import recipe


@pytest.mark.parametrize(
    "rows, processes, gather, hard, expected",
    [
        (16, 1, False, False, 15),
        (16, 1, False, True, 31),
        (16, 2, False, True, 31),
        (16, 2, True, True, 63),
        (16, 2, True, False, 31),
        (8, 4, True, True, 63),
        (1, 1, False, False, 0),
    ],
)
def test_negatives_per_anchor(rows, processes, gather, hard, expected):
    assert negatives_per_anchor(rows, processes, gather, hard) == expected


def test_negatives_per_anchor_refuses_empty_batches():
    with pytest.raises(ValueError, match="at least 1"):
        negatives_per_anchor(0, 2, True, True)


def test_false_negative_steps_counts_a_positive_among_another_processs_candidates():
    rows = [("q1", "d1", "n1"), ("q2", "d2", "n2"), ("q3", "d1", "n3"), ("q4", "d4", "d2"), ("q5", "q1", "n5")]
    # step 1: d1 is the positive of rows 0 and 2, in different processes; step 2: none shared
    assert false_negative_steps([[[0, 1], [4]], [[2], [3]]], rows) == 1
    assert false_negative_steps([[[1]], [[3]]], rows) == 1  # d2 is row 3's hard negative: a candidate too
    assert (
        false_negative_steps([[[0]], [[4]]], rows) == 0
    )  # q1 is an anchor in one and a positive in the other: not a candidate of row 0
    assert false_negative_steps([[[0, 2]]], rows) == 0  # one process: no other process's candidates


def test_latest_checkpoint_takes_the_newest_complete_one(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for step, complete in ((4, True), (12, True), (16, False)):  # 16: cut short, no trainer_state.json
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        if complete:
            (folder / "trainer_state.json").write_text("{}")
    assert latest_checkpoint(tmp_path).name == "checkpoint-12"  # by number: 12 after 4, though "12" < "4" as text


def test_launch_command_uses_pytorchs_launcher():
    command = launch_command(2, ["--data", "d", "--out", "o"], python="python")
    assert command == [
        "python",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "helpers.distributed",
        "--data",
        "d",
        "--out",
        "o",
    ]
    with pytest.raises(ValueError, match="at least 1"):
        launch_command(0, [])


def test_the_script_runs_notebook_04s_recipe_with_fixed_size_batches():
    args = build_parser().parse_args(["--data", "d", "--out", "o", "--batch-size", "8", "--pairs"])
    assert settings_from(args) == recipe(batch_size=8, hard_negatives=False, group_by_length=False)
    assert settings_from(build_parser().parse_args(["--data", "d", "--out", "o"]))["epochs"] == recipe()["epochs"]


def test_read_run_names_an_unfinished_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="did not finish"):
        read_run(tmp_path)


def test_projected_hours_is_capped_by_the_writer():
    assert projected_hours(3_600_000, 10, 100, None) == pytest.approx(1.0)
    assert projected_hours(3_600_000, 10, 100, 500) == pytest.approx(2.0)  # 1,000/s of encoding, 500/s of writing
    assert projected_hours(3_600_000, 10, 100, 5_000) == pytest.approx(1.0)  # the writer keeps up
    with pytest.raises(ValueError, match="positive rate"):
        projected_hours(1, 1, 0, None)


def test_the_writer_slows_as_its_table_grows():
    falling = {10_000: 10_000.0, 100_000: 9_000.0, 1_000_000: 1_000.0}  # documents/s at each table size
    assert writer_seconds(10_000, falling) == pytest.approx(1.0)
    assert writer_seconds(100_000, falling) == pytest.approx(1.0 + 90_000 / 9_000)
    assert writer_seconds(1_000_000, falling) == pytest.approx(1.0 + 10.0 + 900_000 / 1_000)
    assert writer_seconds(2_000_000, falling) is None  # past the largest measured table: not measured
    assert writer_seconds(2_000_000, falling, extend_largest=True) == pytest.approx(911.0 + 1_000_000 / 1_000)
    # encoding and writing overlap: the slower one sets the time
    assert projected_hours_as_table_grows(1_000_000, 1, 100.0, falling) == pytest.approx(10_000 / 3600)
    assert projected_hours_as_table_grows(1_000_000, 100, 100.0, falling) == pytest.approx(911.0 / 3600)
    assert projected_hours_as_table_grows(2_000_000, 100, 100.0, falling) is None
    # the bottleneck switches as the table grows: encoding first (5,000/s), then the writer (1,000/s)
    assert projected_hours_as_table_grows(1_000_000, 50, 100.0, falling) == pytest.approx(
        (100_000 / 5_000 + 900_000 / 1_000) / 3600
    )
    with pytest.raises(ValueError, match="positive measured rates"):
        writer_seconds(10, {})


def test_train_ddp_refuses_zero_processes(capsys):
    with pytest.raises(ValueError, match="at least 1"):
        cli.main(["train-ddp", "--processes", "0", "--", "--data", "d", "--out", "o"])


def test_reindex_ray_names_a_folder_that_is_not_prepared_data(tmp_path, capsys):
    assert cli.main(["reindex-ray", "--data", str(tmp_path), "--store", str(tmp_path / "store")]) == 2
    assert "corpus.jsonl is missing" in capsys.readouterr().err


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports that nothing listens on now (the OS picks them)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for handle in sockets:
            handle.bind(("127.0.0.1", 0))
        return [handle.getsockname()[1] for handle in sockets]
    finally:
        for handle in sockets:
            handle.close()


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ray start exited with {process.returncode} before its head listened on {port}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the Ray head did not listen on port {port} within {seconds:.0f} s")


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray head node started like a cluster's (`ray start --head`), owned by this test: its own temporary
    folder and ports, in the foreground (`--block`) of a process group of its own, and stopped through that
    handle, never by `ray stop` (which stops every Ray of the user on the machine: the smoke run's notebook 16
    may have one running meanwhile, and a developer's own). Yields its address and the environment that joins
    it."""
    ray = shutil.which("ray", path=os.path.dirname(sys.executable))
    temp_dir = tempfile.mkdtemp(prefix="ray-test-", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    gcs, node_manager, object_manager, agent, agent_grpc, runtime_env, metrics = free_ports(7)
    command = [
        ray,
        "start",
        "--head",
        "--block",
        "--temp-dir",
        temp_dir,
        "--port",
        str(gcs),
        "--node-manager-port",
        str(node_manager),
        "--object-manager-port",
        str(object_manager),
        "--dashboard-agent-listen-port",
        str(agent),
        "--dashboard-agent-grpc-port",
        str(agent_grpc),
        "--runtime-env-agent-port",
        str(runtime_env),
        "--metrics-export-port",
        str(metrics),
        "--min-worker-port",
        "0",
        "--max-worker-port",
        "0",
        "--num-cpus",
        "2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    # Token authentication with a token of the test's own (not ~/.ray/auth_token, shared by the user's clusters)
    environment = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex}
    log = open(os.path.join(temp_dir, "ray-start.log"), "w")
    head = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=environment)
    try:
        wait_for_port(gcs, head)
        yield f"127.0.0.1:{gcs}", environment
    finally:
        stop_process_group(head)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def stop_process_group(process: subprocess.Popen, grace: float = 3) -> None:
    """Stop what `process` started, and only that: SIGTERM to its process group (the head's GCS, raylet and
    workers are in it, as `ray stop` would send them), then SIGKILL to what is left after `grace` seconds."""
    group = process.pid
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(group, sent)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_members(group):
            time.sleep(0.2)
        if not group_members(group):
            break
    process.wait()
    assert not group_members(group), f"processes of the Ray head's group {group} outlived SIGKILL"


def group_members(group: int) -> list[int]:
    """The live processes (not zombies) whose process group is `group`."""
    import psutil

    members = []
    for candidate in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(candidate.pid) == group and candidate.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(candidate.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def test_reindex_ray_joins_a_cluster_by_address(ray_cluster, tmp_path):
    address, environment = ray_cluster
    corpus = {code.code: code.description for code in parse_icd10cm()[:40]}
    first = next(iter(corpus))
    data = RetrievalData("toy", corpus, {"q1": corpus[first].lower()}, {"test": {"q1": {first: 1}}})
    save_beir(data, tmp_path / "data")
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "helpers.cli",
            "reindex-ray",
            "--data",
            str(tmp_path / "data"),
            "--store",
            str(tmp_path / "store"),
            "--workers",
            "1",
            "--batch-size",
            "4",
            "--ray-address",
            address,
        ],
        capture_output=True,
        text=True,
        env=environment,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout[completed.stdout.index("{\n") :])  # after the line naming the cluster
    assert report["reindex"]["embedded"] == len(data.corpus) == report["live"]["rows"]
    assert report["reindex"]["rows_received"] == len(data.corpus) and len(report["reindex"]["docs_per_worker"]) == 1
    assert report["live"]["table"].startswith("all-minilm-l6-v2__")


def test_the_test_cluster_cannot_be_joined_by_a_local_ray_init(ray_cluster):
    """The head above is this test's alone: a process that starts Ray without an address (notebook 16's local
    Ray through `start_ray`, or a bare `ray.init()`) starts a cluster of its own instead of joining it."""
    address, environment = ray_cluster
    script = (
        "import ray\nfrom helpers.ray_indexing import start_ray\n"
        "start_ray(None, num_cpus=1)\nprint('start_ray', ray.get_runtime_context().gcs_address)\nray.shutdown()\n"
        "ray.init(num_cpus=1, include_dashboard=False)\nprint('ray.init', ray.get_runtime_context().gcs_address)\n"
    )
    others = {
        key: value
        for key, value in environment.items()
        if key not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    }
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=others, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    joined = dict(
        line.split(" ", 1) for line in completed.stdout.splitlines() if line.startswith(("start_ray", "ray.init"))
    )
    assert set(joined) == {"start_ray", "ray.init"} and address.split(":")[1] not in " ".join(joined.values())


def test_an_injected_worker_crash_kills_the_first_process_only(tmp_path):
    """`ray_sync_index(crash_at=...)`: the first worker to reach the chosen block dies by SIGKILL (a lost machine,
    no clean-up); the restarted worker that gets the block again runs it to the end and marks it as redone."""
    marker = tmp_path / "folder made by the worker" / "crashed"
    crash = [
        sys.executable,
        "-c",
        f"from helpers.ray_indexing import _crash_once; print('redone:', _crash_once({str(marker)!r}))",
    ]
    root = Path(__file__).resolve().parents[2]
    first = subprocess.run(crash, capture_output=True, text=True, cwd=root)
    assert first.returncode == -signal.SIGKILL and "redone" not in first.stdout and marker.exists()
    second = subprocess.run(crash, capture_output=True, text=True, cwd=root)
    assert second.returncode == 0 and "redone: True" in second.stdout


def test_an_injected_crash_must_name_a_document_the_call_embeds(tmp_path, base_model):
    from helpers.indexing import open_store
    from helpers.ray_indexing import Embedder, ray_sync_index

    with pytest.raises(ValueError, match="crash_at='d9' is not a document this call embeds"):
        ray_sync_index(open_store(tmp_path), "t", {"d1": "Fracture of the femur"}, base_model, "m", 1, crash_at="d9")
    with pytest.raises(ValueError, match="needs a crash_marker"):
        Embedder("all-MiniLM-L6-v2", crash_at="d1")
