"""Tests for krypton.train: the training CLI, its records, Ctrl-C, and that training learns.

The CLI runs on a tiny synthetic dataset written here as IDX files (a few hundred random
images, so an epoch takes milliseconds); one test trains on the real Fashion-MNIST from Debian's
``dataset-fashion-mnist`` and skips without it; the PyTorch comparison skips without torch.
No test decides anything from a time: times are only checked to be there and positive.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import krypton
from krypton import data as kdata
from krypton import seam, train
from ctrl_c import sigint_default

REPO = Path(__file__).resolve().parents[1]
TRAIN_COUNT, TEST_COUNT, BATCH = 320, 64, 64          # 5 batches per epoch
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def write_idx(path: Path, array: np.ndarray) -> None:
    """Gzipped IDX: magic 0x0000080<ndim>, big-endian uint32 dims, then the bytes."""
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I",
                                                                       *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_dataset(directory: Path, seed: int = 0) -> Path:
    """A learnable toy dataset: class c is noise plus a bright band at rows 2c..2c+2."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", TRAIN_COUNT), ("test", TEST_COUNT)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 100, (count, 28, 28))
        for row, label in enumerate(labels):
            images[row, 2 * label:2 * label + 3, :] += 150
        images_name, labels_name = SPLIT_FILES[split]
        write_idx(directory / images_name, images)
        write_idx(directory / labels_name, labels)
    return directory


@pytest.fixture(autouse=True)
def offline_and_private(tmp_path_factory, monkeypatch):
    """No downloads, no user dataset cache; compiled kernels still come from the usual cache."""
    monkeypatch.setenv("KRYPTON_CACHE", str(seam.cache_dir()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    monkeypatch.delenv("KRYPTON_DATA", raising=False)
    # Port 9 (discard) is closed on 127.0.0.1: a download attempt fails at once.
    monkeypatch.setenv("KRYPTON_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setenv("KRYPTON_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("toy") / "mnist")


@pytest.fixture(scope="module")
def toy_data(toy_root) -> train.Data:
    return train.load_data("mnist", root=toy_root)


def run_cli(capsys, *args: str) -> tuple[int, str]:
    code = train.main(["--no-progress", *args])
    return code, capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# The command line


def test_cli_trains_an_epoch_and_writes_every_number_as_json(capsys, toy_root, tmp_path):
    out_file = tmp_path / "train.json"  # its directory must exist: it is checked before training
    code, out = run_cli(capsys, "--dataset", "mnist", "--data-root", str(toy_root),
                        "--backend", "parallel", "--epochs", "2", "--batch-size", str(BATCH),
                        "--max-batches", "3", "--json", str(out_file))
    assert code == 0
    assert "parallel epoch 1/2" in out and "parallel epoch 2/2" in out
    assert "epoch time" in out and "test acc" in out
    assert "This core: a 4 KiB add took" in out   # whether step times can be compared

    document = json.loads(out_file.read_text())
    assert document["dataset"] == "mnist"
    assert {"cpu", "isa"} <= set(document["machine"])
    (run,) = document["runs"]
    assert run["backend"] == "parallel" and not run["interrupted"]
    assert run["settings"]["sizes"] == [784, 256, 10]
    assert run["settings"]["batches_per_epoch"] == TRAIN_COUNT // BATCH
    assert len(run["epochs"]) == 2 and len(run["batch_losses"]) == 6
    for epoch in run["epochs"]:
        assert epoch["batches"] == 3 and epoch["extrapolated"]
        assert epoch["seconds"] > 0 and 0 < epoch["matmul_seconds"] < epoch["seconds"]
        assert math.isclose(epoch["seconds"], epoch["measured_seconds"] * 5 / 3)
        assert set(epoch["phase_seconds"]) == set(train.PHASES)
        assert 0 <= epoch["test_accuracy"] <= 1 and math.isfinite(epoch["train_loss"])


def test_without_backend_the_cli_trains_on_the_top_rung(capsys, toy_root):
    # The README's `python -m krypton.train` promises the fastest rung: the last of the ladder.
    code, out = run_cli(capsys, "--dataset", "mnist", "--data-root", str(toy_root),
                        "--epochs", "1", "--batch-size", str(BATCH), "--max-batches", "1")
    assert code == 0
    assert f"{krypton.KERNELS[-1]} epoch 1/1" in out


def test_without_mnist_the_cli_falls_back_to_fashion_mnist_and_says_so(capsys, tmp_path,
                                                                      monkeypatch):
    write_dataset(tmp_path / "fashion-mnist")
    monkeypatch.setenv("KRYPTON_DATA", str(tmp_path))
    monkeypatch.setattr(kdata, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    code, out = run_cli(capsys, "--backend", "packed", "--epochs", "1", "--max-batches", "2")
    assert code == 0
    assert "MNIST is not available" in out and "Fashion-MNIST" in out
    assert "Dataset: fashion-mnist" in out


def test_asking_for_a_missing_dataset_says_where_it_looked(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(kdata, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "no-debian-package")
    code = train.main(["--no-progress", "--dataset", "fashion-mnist"])
    assert code == 1
    assert "Could not find the fashion-mnist train files" in capsys.readouterr().err


def test_backend_all_runs_every_rung_and_labels_the_naive_extrapolation(capsys, toy_root,
                                                                         tmp_path):
    out_file = tmp_path / "all.json"
    code, out = run_cli(capsys, "--dataset", "mnist", "--data-root", str(toy_root),
                        "--backend", "all", "--epochs", "1", "--batch-size", str(BATCH),
                        "--naive-batches", "2", "--json", str(out_file))
    assert code == 0
    runs = json.loads(out_file.read_text())["runs"]
    assert [run["backend"] for run in runs] == list(train.BACKENDS)
    extrapolated = {run["backend"]: run["extrapolated"] for run in runs}
    assert extrapolated.pop("naive") is True and not any(extrapolated.values())
    naive = runs[0]["epochs"][0]
    assert naive["batches"] == 2 and naive["batches_per_epoch"] == TRAIN_COUNT // BATCH
    assert "* naive: timed on 2 of 5 batches per epoch, epoch time extrapolated" in out
    summary = out[out.index("epoch time"):]
    for backend in train.BACKENDS:
        assert backend in summary


@pytest.mark.parametrize("args, message", [
    (["--backend", "fastest"], "unknown backend 'fastest'; choose one of "
                               + ", ".join(train.BACKENDS) + ", or all"),
    (["--epochs", "-1"], "argument --epochs: expected a positive integer, got -1"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, got 0"),
    (["--batch-size", "-128"], "argument --batch-size: expected a positive integer, got -128"),
    (["--lr", "0"], "argument --lr: expected a finite positive number, got 0"),
    (["--optimizer", "rmsprop"], "invalid choice: 'rmsprop'"),
    (["--sizes", "784"], "--sizes needs at least two widths"),
])
def test_bad_arguments_are_argparse_errors_that_say_what_is_accepted(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        train.main(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_train_rejects_bad_values_with_the_accepted_ones(toy_data):
    model = train.build_mlp(seed=0)
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose one of naive"):
        train.train(model, toy_data, "gpu")
    with pytest.raises(ValueError, match="epochs must be a positive integer, got 0"):
        train.train(model, toy_data, "numpy", epochs=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got -5"):
        train.train(model, toy_data, "numpy", batch_size=-5)


# --------------------------------------------------------------------------------------------
# Same start, same batches, same numbers


def test_every_backend_starts_from_the_same_weights_and_follows_the_same_path(toy_data):
    options = dict(epochs=1, batch_size=BATCH, progress=False, log=None)
    losses = {}
    for backend in ("numpy", "packed", "parallel"):
        history = train.train(train.build_mlp(seed=3), toy_data, backend, seed=3, **options)
        losses[backend] = np.array(history.batch_losses)
    assert len(losses["numpy"]) == TRAIN_COUNT // BATCH
    np.testing.assert_allclose(losses["packed"], losses["numpy"], rtol=1e-4)
    np.testing.assert_allclose(losses["parallel"], losses["numpy"], rtol=1e-4)


def test_initial_parameters_follow_pytorchs_linear_init_and_depend_only_on_the_seed():
    first = train.initial_parameters((784, 256, 10), seed=5)
    again = train.initial_parameters((784, 256, 10), seed=5)
    other = train.initial_parameters((784, 256, 10), seed=6)
    assert [w.shape for w, _ in first] == [(256, 784), (10, 256)]
    for (weight, bias), (weight2, bias2), fan_in in zip(first, again, (784, 256)):
        np.testing.assert_array_equal(weight, weight2)
        np.testing.assert_array_equal(bias, bias2)
        bound = 1 / math.sqrt(fan_in)
        assert weight.dtype == np.float32 and np.abs(weight).max() <= bound
        assert np.abs(weight).max() > 0.95 * bound  # uniform over the whole interval
    assert not np.array_equal(first[0][0], other[0][0])
    model = train.build_mlp((784, 256, 10), seed=5)
    np.testing.assert_array_equal(train.linear_layers(model)[0].weight.data, first[0][0])


def test_the_cosine_schedule_falls_from_lr_to_zero():
    assert train.learning_rate(0.1, 0, 100) == pytest.approx(0.1)
    assert train.learning_rate(0.1, 50, 100) == pytest.approx(0.05)
    assert train.learning_rate(0.1, 100, 100) == pytest.approx(0.0, abs=1e-12)
    assert train.learning_rate(0.1, 77, 100, "constant") == 0.1


# --------------------------------------------------------------------------------------------
# Ctrl-C


def test_an_interrupt_keeps_the_finished_epochs_and_the_partial_one(toy_data):
    def interrupt_in_second_epoch(epoch: int, step: int, loss: float) -> None:
        if epoch == 1 and step == 2:
            raise KeyboardInterrupt

    lines: list[str] = []
    history = train.train(train.build_mlp(), toy_data, "parallel", epochs=3, batch_size=BATCH,
                          progress=False, log=lines.append, callback=interrupt_in_second_epoch)
    assert history.interrupted
    assert [e.batches for e in history.epochs] == [5, 2]
    assert history.epochs[0].test_accuracy is not None
    assert history.epochs[1].test_accuracy is None and history.epochs[1].extrapolated
    assert len(lines) == 2 and "test accuracy not measured" in lines[1]
    summary = train.format_summary([history])
    assert "parallel" in summary and "interrupted (Ctrl-C)" in summary


def test_an_interrupt_stops_the_remaining_backends(toy_data, monkeypatch):
    stepped = []
    real_train_epochs = train.loop.train_epochs

    def train_then_interrupt(model, data, backend, **options):
        def callback(epoch: int, step: int, loss: float) -> None:
            stepped.append(backend)
            if backend == "packed" and step == 2:
                raise KeyboardInterrupt
        return real_train_epochs(model, data, backend, **{**options, "callback": callback})

    monkeypatch.setattr(train.compare, "train_epochs", train_then_interrupt)  # what it calls
    histories = train.train_backends(["numpy", "packed", "parallel"], toy_data, epochs=2,
                                     batch_size=BATCH, progress=False, log=None, pause=0)
    assert sorted(set(stepped)) == ["numpy", "packed"]     # parallel never took a step
    assert [h.backend for h in histories] == ["numpy", "packed"]
    assert [h.interrupted for h in histories] == [False, True]
    assert [len(h.epochs) for h in histories] == [1, 1]   # numpy's second epoch not run


def test_backends_take_turns_an_epoch_each_and_learn_what_they_learn_alone(toy_data):
    # Round r starts r places further along the list, as the bench's rounds do; and taking
    # turns changes no number: each run keeps its own model, optimizer, batches and settings.
    lines: list[str] = []
    options = dict(epochs=3, batch_size=BATCH, progress=False, seed=4)
    histories = train.train_backends(["numpy", "packed", "parallel"], toy_data, pause=0,
                                     log=lines.append, **options)
    order = [(line.split()[0], line.split()[2].rstrip(":")) for line in lines]
    assert order == [("numpy", "1/3"), ("packed", "1/3"), ("parallel", "1/3"),
                     ("packed", "2/3"), ("parallel", "2/3"), ("numpy", "2/3"),
                     ("parallel", "3/3"), ("numpy", "3/3"), ("packed", "3/3")]
    assert [h.backend for h in histories] == ["numpy", "packed", "parallel"]
    for history in histories:
        alone = train.train(train.build_mlp(seed=4), toy_data, history.backend, log=None,
                            **options)
        assert [e.epoch for e in history.epochs] == [1, 2, 3]
        np.testing.assert_array_equal(history.batch_losses, alone.batch_losses)
        assert [e.test_accuracy for e in history.epochs] == [e.test_accuracy
                                                             for e in alone.epochs]


def test_runs_taking_turns_keep_their_own_settings(toy_data):
    # Two runs of one backend, fused kernels on and off (notebook 10's comparison): each epoch
    # enters its own run's settings, so each run computes what it computes alone.
    options = dict(epochs=2, batch_size=BATCH, progress=False, log=None, seed=1)
    runs = {fused: train.train_epochs(train.build_mlp(seed=1), toy_data, "packed", fused=fused,
                                      **options) for fused in (True, False)}
    assert all(not run.history.epochs for run in runs.values())   # nothing trained yet
    histories = train.take_turns(runs, pause=0)
    assert list(histories) == [True, False]
    for fused, history in histories.items():
        alone = train.train(train.build_mlp(seed=1), toy_data, "packed", fused=fused, **options)
        np.testing.assert_array_equal(history.batch_losses, alone.batch_losses)
        assert history is runs[fused].history and runs[fused].done
    assert not np.array_equal(histories[True].batch_losses, histories[False].batch_losses)


def _history(backend: str, seconds: list[float]) -> train.History:
    history = train.History(backend, 2, "mnist", {"epochs": len(seconds)})
    for number, time in enumerate(seconds, 1):
        history.epochs.append(train.EpochResult(
            epoch=number, seconds=time, matmul_seconds=None if backend == "torch" else time / 2,
            phase_seconds={}, train_loss=0.5, test_accuracy=0.9, batches=10,
            batches_per_epoch=10, measured_seconds=time))
    return history


def test_the_summary_shows_each_runs_spread_and_warns_where_it_hides_the_ratio():
    torch_run = _history("torch", [0.60, 0.62, 0.64])
    clear = _history("small", [0.35, 0.36, 0.37])        # far from PyTorch's: a real ratio
    tight_tie = _history("parallel", [0.61, 0.62, 0.63])  # overlaps, within 10%: a real tie
    noisy = _history("numpy", [0.45, 0.61, 0.80])         # overlaps, spread 57%
    summary = train.format_summary([clear, tight_tie, noisy, torch_run])
    assert "min-max" in summary and "0.35-0.37 s" in summary and "0.45-0.80 s" in summary
    warnings = [line for line in summary.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "of numpy is undecided" in warnings[0]
    one_epoch = train.format_summary([_history("small", [0.3]), _history("torch", [0.3, 0.9])])
    assert "warning" not in one_epoch   # one epoch has no spread to judge by
    two_epochs = train.format_summary([_history("small", [0.3, 0.6]),
                                       _history("torch", [0.35, 0.5])])
    assert "of small is undecided" in two_epochs   # too few to pair: the ranges overlap


def test_the_ratio_to_pytorch_is_taken_epoch_by_epoch():
    # The second round was a slow stretch of the host for both: the ranges overlap and spread
    # over 10%, yet every epoch took 0.58-0.6x PyTorch's epoch of the same round.
    torch_run = _history("torch", [0.60, 1.20, 0.62])
    small = _history("small", [0.35, 0.70, 0.37])
    summary = train.format_summary([small, torch_run])
    assert "warning" not in summary
    row = next(line for line in summary.splitlines() if line.split()[0] == "small")
    assert row.split()[-1] == f"{0.35 / 0.60:.2f}x"   # the median ratio, not 0.37 / 0.62


def test_ctrl_c_prints_what_was_measured_and_exits_130(toy_root):
    command = [sys.executable, "-m", "krypton.train", "--no-progress", "--dataset", "mnist",
               "--data-root", str(toy_root), "--backend", "naive", "--epochs", "1000",
               "--batch-size", "16"]
    environment = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=environment, cwd=REPO,
                               preexec_fn=sigint_default)
    try:
        seen = []
        for line in process.stdout:  # wait for the first epoch's line
            seen.append(line)
            if "naive epoch 1/1000" in line:
                break
        else:
            pytest.fail("no epoch line; output:\n" + "".join(seen) + process.stderr.read())
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "Traceback" not in err
    assert "Interrupted (Ctrl-C): what was measured so far:" in out
    summary = out[out.index("what was measured so far"):]
    assert "naive" in summary and "epoch time" in summary


# --------------------------------------------------------------------------------------------
# Learning, and PyTorch


@pytest.mark.skipif(not (kdata.DEBIAN_FASHION_MNIST_DIR / SPLIT_FILES["test"][0]).exists(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_a_few_hundred_steps_on_fashion_mnist_reach_75_percent():
    fashion = train.load_data("fashion-mnist", root=kdata.DEBIAN_FASHION_MNIST_DIR)
    history = train.train(train.build_mlp(seed=0), fashion, "parallel", epochs=1,
                          batch_size=128, max_batches=300, progress=False, log=None)
    assert history.test_accuracy > 0.75
    assert np.mean(history.batch_losses[-50:]) < np.mean(history.batch_losses[:50])


@pytest.mark.torch
def test_compare_torch_trains_the_same_model_on_the_same_batches(capsys, toy_root, tmp_path):
    pytest.importorskip("torch")
    out_file = tmp_path / "torch.json"
    code, out = run_cli(capsys, "--dataset", "mnist", "--data-root", str(toy_root),
                        "--backend", "parallel", "--epochs", "2", "--batch-size", str(BATCH),
                        "--compare-torch", "--json", str(out_file))
    assert code == 0
    assert "vs torch" in out and "torch epoch 2/2" in out
    ours, theirs = json.loads(out_file.read_text())["runs"]
    assert theirs["backend"] == "torch" and theirs["threads"] == ours["threads"]
    assert theirs["settings"] == ours["settings"]
    assert theirs["matmul_seconds"] is None
    np.testing.assert_allclose(ours["batch_losses"], theirs["batch_losses"], rtol=2e-3)
    assert abs(ours["test_accuracy"] - theirs["test_accuracy"]) <= 2 / TEST_COUNT


@pytest.mark.torch
def test_compare_torch_runs_without_a_warning(toy_root):
    # load_data's train_images are read-only, and PyTorch warns when it wraps a read-only
    # array: the comparison must hand it copies (a fresh process: PyTorch warns only once).
    pytest.importorskip("torch")
    command = [sys.executable, "-W", "error", "-m", "krypton.train", "--no-progress",
               "--dataset", "mnist", "--data-root", str(toy_root), "--epochs", "1",
               "--batch-size", str(BATCH), "--max-batches", "2", "--compare-torch"]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch epoch 1/1" in done.stdout and "Warning" not in done.stderr


@pytest.mark.torch
def test_the_torch_twin_is_an_exact_copy_of_the_krypton_model():
    torch = pytest.importorskip("torch")
    model = train.build_mlp((784, 32, 10), seed=1)
    twin = train.build_torch_mlp(model)
    images = np.random.default_rng(0).standard_normal((7, 784)).astype(np.float32)
    import krypton

    with krypton.no_grad(), krypton.backend("numpy"):
        ours = model(krypton.Tensor(images)).data
    with torch.no_grad():
        theirs = twin(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Checked before training, written so nothing is lost


def run_cli_process(*args: str) -> subprocess.CompletedProcess:
    """The training CLI in its own process, as a user runs it (a crash would show here)."""
    return subprocess.run([sys.executable, "-m", "krypton.train", "--no-progress", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("args, message", [
    (["--json", "/nonexistent/dir/x.json"], "--json path '/nonexistent/dir/x.json' is in a "
                                            "directory that does not exist"),
    (["--lr", "inf"], "argument --lr: expected a finite positive number, got inf"),
    (["--lr", "nan"], "argument --lr: expected a finite positive number, got nan"),
    (["--momentum", "1"], "argument --momentum: expected a number in [0, 1)"),
    (["--threads", "2147483648"], "argument --threads: expected at most 1024 threads"),
    (["--epochs", "0"], "argument --epochs: expected a positive integer, got 0"),
    (["--sizes", "784", "100000000000", "10"], "more than half of this machine's"),
])
def test_the_cli_refuses_bad_arguments_before_loading_or_training(toy_root, args, message):
    result = run_cli_process("--dataset", "mnist", "--data-root", str(toy_root), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "epoch" not in result.stdout and "Dataset:" not in result.stdout


def test_a_json_path_that_is_a_directory_is_refused_at_once(toy_root, tmp_path):
    result = run_cli_process("--dataset", "mnist", "--data-root", str(toy_root),
                             "--json", str(tmp_path))
    assert result.returncode == 2 and "is a directory" in result.stderr


def test_an_interrupted_json_write_leaves_the_old_results(capsys, toy_root, tmp_path,
                                                          monkeypatch):
    out_file = tmp_path / "train.json"
    out_file.write_text('{"old": true}')

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train.cli, "results_document", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_cli(capsys, "--dataset", "mnist", "--data-root", str(toy_root), "--epochs", "1",
                "--batch-size", str(BATCH), "--max-batches", "1", "--json", str(out_file))
    assert out_file.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["train.json"]


@pytest.mark.parametrize("options, message", [
    ({"lr": float("inf")}, "lr must be a finite number"), ({"lr": 0.0}, "lr must be"),
    ({"momentum": 1.0}, "momentum must be a finite number in \\[0, 1\\)"),
    ({"momentum": -0.1}, "momentum must be"), ({"threads": 2**31}, "threads must be at most"),
    ({"max_batches": 0}, "max_batches must be a positive integer"),
])
def test_train_checks_its_hyper_parameters_before_the_first_step(toy_data, options, message):
    model = train.build_mlp(seed=0)
    before = [p.data.copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=message):
        train.train(model, toy_data, "numpy", epochs=1, progress=False, log=None, **options)
    assert all(np.array_equal(p.data, b) for p, b in zip(model.parameters(), before))


def test_the_matmul_clock_counts_every_product_in_every_thread():
    a = krypton.Tensor(np.ones((3, 4), dtype=np.float32), requires_grad=True)
    b = krypton.Tensor(np.ones((4, 2), dtype=np.float32), requires_grad=True)
    with train.matmul_timer() as outer:
        (a @ b).sum().backward()  # one product forward, two backward
        with train.matmul_timer() as inner:
            worker = threading.Thread(target=lambda: a.detach() @ b.detach())
            worker.start()
            worker.join()
    assert (outer.calls, inner.calls) == (4, 1)
    assert outer.seconds >= inner.seconds > 0
    a.detach() @ b.detach()
    assert outer.calls == 4  # closed blocks count nothing more


@pytest.mark.parametrize("openmp", [True, False])
def test_threaded_rungs_report_the_threads_they_run(monkeypatch, openmp):
    # Without OpenMP (Apple's clang, clang without libomp) a threaded rung computes on one
    # thread whatever it is given: the history, and so the CLI's table, must say 1, while NumPy
    # and PyTorch keep the threads asked for.
    from krypton import seam
    monkeypatch.setattr(seam, "openmp_flags", lambda: ("-fopenmp",) if openmp else ())
    assert train.resolve_threads("small", 2) == (2 if openmp else 1)
    assert train.resolve_threads("parallel", 2) == (2 if openmp else 1)
    assert train.resolve_threads("numpy", 2) == 2
    assert train.resolve_threads("packed", 2) == 1
    with pytest.raises(ValueError, match="threads"):
        train.resolve_threads("small", 0)
