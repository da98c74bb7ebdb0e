"""Bad input beyond krypton.matmul (which tests/test_matmul_errors.py covers): the benchmark CLI,
the autograd engine's products with NaN, infinities and impossible sizes, and IDX files whose
header asks for more memory than exists. Each gets a clear Python exception (or NaN where NumPy
gives NaN), never a crash. The training CLI's arguments are tested in tests/test_train.py, the
data loader's other failures in tests/test_data.py.
"""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest

import krypton
from krypton import bench, data, nn
from krypton.nn import functional as F

# ---------------------------------------------------------------------------------------------
# python -m krypton.bench


@pytest.mark.parametrize("args, message", [
    (["--kernels", "fastest"], "unknown kernel(s) ['fastest']; choose from naive"),
    (["--kernels"], "argument --kernels: expected at least one argument"),
    (["--sizes", "abc"], "shape 'abc': expected N or MxKxN"),
    (["--sizes", "-5"], "shape '-5': expected N or MxKxN with sizes >= 1"),
    (["--sizes", "0"], "shape '0': expected N or MxKxN with sizes >= 1"),
    (["--shapes", "3x4"], "shape '3x4': expected N or MxKxN"),
    (["--shapes", "10x0x5"], "shape '10x0x5': expected N or MxKxN with sizes >= 1"),
    (["--threads", "0"], "--threads must be a positive integer, got 0"),
    (["--threads", "-2"], "--threads must be a positive integer, got -2"),
    (["--threads", "two"], "argument --threads: invalid int value: 'two'"),
    (["--repeats", "0"], "--repeats must be a positive integer, got 0"),
    (["--vs", "matlab"], "invalid choice: 'matlab'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bench_cli_bad_arguments_are_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        bench.main([*args, "--no-plots", "--no-progress"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_bench_cli_reports_a_usage_error_from_the_command_line():
    result = subprocess.run([sys.executable, "-m", "krypton.bench", "--sizes", "-5"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "usage: python -m krypton.bench" in result.stderr
    assert "sizes >= 1" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--sizes", "99999999999"], ["--out", sys.executable]])
def test_bench_cli_impossible_sizes_and_a_file_as_out_are_usage_errors(capsys, args):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--kernels", "naive", "--sizes", "8", *args, "--no-plots",
                    "--no-progress", "--repeats", "1"])
    assert exit_info.value.code == 2


# ---------------------------------------------------------------------------------------------
# The autograd engine: NaN and infinities propagate as in NumPy, impossible sizes are
# MemoryError


def forward_and_backward(backend: str, x: np.ndarray, w: np.ndarray):
    with krypton.backend(backend):
        xt = krypton.Tensor(x, requires_grad=True)
        wt = krypton.Tensor(w, requires_grad=True)
        y = xt @ wt
        y.sum().backward()
    return y.numpy(), xt.grad.numpy(), wt.grad.numpy()


@pytest.mark.parametrize("backend", krypton.KERNELS)
def test_nan_and_inf_flow_through_forward_and_backward_as_with_numpy(backend):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (19, 23)).astype(np.float32)
    w = rng.uniform(-1, 1, (23, 29)).astype(np.float32)
    x[2, 3], x[5, 7], w[11, 13], w[17, 4] = np.nan, np.inf, -np.inf, np.inf
    expected = forward_and_backward("numpy", x, w)
    got = forward_and_backward(backend, x, w)
    for name, g, e in zip(("y", "x.grad", "w.grad"), got, expected):
        for test in (np.isnan, np.isposinf, np.isneginf):
            assert np.array_equal(test(g), test(e)), f"{name}: {test.__name__} differs"
        finite = np.isfinite(e)
        assert np.allclose(g[finite], e[finite], atol=1e-4), name


def test_a_loss_of_nan_logits_is_nan_not_an_error():
    logits = krypton.Tensor(np.full((2, 10), np.nan, np.float32), requires_grad=True)
    loss = F.cross_entropy(logits, np.array([0, 1]))
    loss.backward()
    assert np.isnan(loss.item()) and np.isnan(logits.grad.numpy()).all()


@pytest.mark.parametrize("backend", ["parallel", "naive", "numpy"])
def test_a_tensor_product_too_large_to_allocate_is_a_memory_error(backend):
    x = krypton.Tensor(np.broadcast_to(np.float32(1), (10**7, 3)))
    w = krypton.Tensor(np.broadcast_to(np.float32(1), (3, 10**6)))
    with krypton.backend(backend), pytest.raises(MemoryError):
        x @ w


def test_a_layer_too_large_to_allocate_is_a_memory_error():
    with pytest.raises(MemoryError):
        nn.Linear(10**12, 10**6)


# ---------------------------------------------------------------------------------------------
# IDX files whose header asks for impossible sizes


def idx_header(dims: tuple[int, ...]) -> bytes:
    return struct.pack(">HBB", 0, 8, len(dims)) + struct.pack(f">{len(dims)}I", *dims)


@pytest.mark.parametrize("compress", [False, True])
def test_an_idx_header_claiming_exabytes_is_a_format_error_not_an_allocation(tmp_path, compress):
    payload = idx_header((2**31 - 1, 2**31 - 1, 2**31 - 1)) + bytes(100)
    path = tmp_path / ("huge.idx.gz" if compress else "huge.idx")
    path.write_bytes(gzip.compress(payload) if compress else payload)
    with pytest.raises(data.IDXFormatError, match="truncated"):
        data.read_idx(path)


def test_the_short_way_in_refuses_wrong_arguments_with_an_error_not_a_crash():
    # csrc/kr_fastcall.c is called only by krypton.kernels, with the rung's own addresses; a
    # call made by hand with wrong arguments must raise, never jump to address 0.
    from krypton import kernels
    fastcall = kernels._fastcall()
    assert fastcall is not None, "the short way in did not build here"
    kernel = kernels.get_kernel("small")
    a = np.ones((2, 2), np.float32)
    kernel(a, a)
    _, _, knobs, _ = kernel._fast[None]
    with pytest.raises(TypeError):
        fastcall()
    with pytest.raises(TypeError):
        fastcall([0, 0, 0], knobs, 1 << 18, a, a)          # not a tuple
    with pytest.raises(TypeError):
        fastcall(("f", 1, False), knobs, 1 << 18, a, a)    # not an address
    with pytest.raises(ValueError, match="NULL"):
        fastcall((0, 1 << 18, False), knobs, 1 << 18, a, a)
    with pytest.raises(ValueError, match="NULL"):
        fastcall(kernel._fastcall_kernel, 0, 1 << 18, a, a)
    # Operands it does not take are declined (None), for the full path to check.
    for x, y in ((a, a.astype(np.float64)), ([[1.0]], a), (a, np.ones((3, 2), np.float32)),
                 (np.ones((2, 2, 1), np.float32), a)):
        assert fastcall(kernel._fastcall_kernel, knobs, 1 << 18, x, y) is None
    assert np.array_equal(fastcall(kernel._fastcall_kernel, knobs, 1 << 18, a, a), a @ a)
