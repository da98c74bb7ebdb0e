"""Tests for the convolution as a matrix product: conv2d, max_pool2d, their layers, the CNN.

Reference values come from a direct convolution written here in float64 NumPy (a sum over the
kernel offsets, not im2col), from central finite differences in float64, and from PyTorch when
it is installed. The CNN trains through the CLI on a tiny synthetic dataset.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import krypton
import krypton.nn.functional as F
from krypton import backends, nn, train
from krypton.autograd import col2im, im2col

REPO = Path(__file__).resolve().parents[1]

# (batch, in_channels, height, width, out_channels, kernel, stride, padding): strides 1 and 2,
# padding 0 and 1, kernels 1, 3 and 5, channels 1 to 8, non-square images, batch 1.
CONV_CASES = [
    (1, 1, 5, 5, 1, 1, 1, 0),
    (2, 3, 6, 8, 4, 3, 1, 1),
    (1, 2, 7, 5, 3, 3, 2, 0),
    (2, 8, 5, 6, 2, 1, 2, 1),
    (1, 4, 9, 7, 8, 5, 1, 0),
    (2, 1, 8, 11, 5, 5, 2, 1),
    (3, 5, 4, 6, 6, 3, 2, 1),
]
POOL_CASES = [((2, 3, 6, 8), 2, None), ((1, 2, 7, 5), 3, 2), ((2, 1, 5, 6), 2, 1),
              ((1, 4, 4, 9), (2, 3), (1, 2))]


def direct_conv(x, w, b, stride, padding):
    """The convolution as its definition: for each kernel offset, a strided slice times the
    weight at that offset, summed (float64)."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    y = np.zeros((n, o, ho, wo)) + b[None, :, None, None]
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y


def direct_pool(x, kernel, stride):
    kh, kw = kernel
    sh, sw = stride
    ho, wo = (x.shape[2] - kh) // sh + 1, (x.shape[3] - kw) // sw + 1
    y = np.empty(x.shape[:2] + (ho, wo))
    for r in range(ho):
        for c in range(wo):
            y[:, :, r, c] = x[:, :, r * sh:r * sh + kh, c * sw:c * sw + kw].max(axis=(2, 3))
    return y


def numeric_grad(f, array, eps=1e-6):
    """d f() / d array by central differences (array changed in place and restored)."""
    grad = np.zeros_like(array)
    flat, out = array.reshape(-1), grad.reshape(-1)
    for index in range(flat.size):
        saved = flat[index]
        flat[index] = saved + eps
        up = f()
        flat[index] = saved - eps
        down = f()
        flat[index] = saved
        out[index] = (up - down) / (2 * eps)
    return grad


def pair(value):
    return value if isinstance(value, tuple) else (value, value)


# --------------------------------------------------------------------------------------------
# conv2d


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_the_direct_convolution_and_finite_differences(case):
    n, c, h, w, o, k, stride, padding = case
    rng = np.random.default_rng(sum(case))
    x, weight, bias = (rng.standard_normal(s) for s in ((n, c, h, w), (o, c, k, k), (o,)))
    xt, wt, bt = (krypton.Tensor(a, requires_grad=True) for a in (x, weight, bias))
    y = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    np.testing.assert_allclose(y.data, direct_conv(x, weight, bias, stride, padding),
                               rtol=1e-12, atol=1e-12)

    upstream = rng.standard_normal(y.shape)
    y.backward(upstream)

    def loss():
        return float(np.sum(direct_conv(x, weight, bias, stride, padding) * upstream))

    for tensor, array in ((xt, x), (wt, weight), (bt, bias)):
        np.testing.assert_allclose(tensor.grad.data, numeric_grad(loss, array), rtol=1e-6,
                                   atol=1e-6)


def test_im2col_and_col2im_are_adjoint():
    """<im2col(x), cols> == <x, col2im(cols)> for any x and cols: col2im is the transpose."""
    rng = np.random.default_rng(1)
    for shape, kernel, stride, padding in (((2, 3, 7, 6), (3, 3), (2, 1), (1, 0)),
                                           ((1, 2, 5, 9), (5, 2), (1, 3), (2, 1))):
        x = rng.standard_normal(shape)
        cols = im2col(x, kernel, stride, padding)
        other = rng.standard_normal(cols.shape)
        back = col2im(other, shape, kernel, stride, padding)
        assert back.shape == shape
        np.testing.assert_allclose(np.sum(cols * other), np.sum(x * back), rtol=1e-12)


def test_conv2d_runs_its_products_on_the_backend_in_float32():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    weight = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(5).astype(np.float32)
    xt, wt, bt = (krypton.Tensor(a, requires_grad=True) for a in (x, weight, bias))
    with krypton.backend("packed"), backends.matmul_clock() as clock:
        y = F.conv2d(xt, wt, bt, stride=1, padding=1)
        y.sum().backward()
    assert clock.calls == 3  # forward, dW, dcols
    assert y.dtype == np.float32 and xt.grad.dtype == np.float32
    reference = direct_conv(x.astype(np.float64), weight.astype(np.float64),
                            bias.astype(np.float64), 1, 1)
    np.testing.assert_allclose(y.data, reference, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# max_pool2d


@pytest.mark.parametrize("shape, kernel, stride", POOL_CASES)
def test_max_pool2d_matches_the_window_maximum_and_finite_differences(shape, kernel, stride):
    rng = np.random.default_rng(len(shape) + shape[-1])
    x = rng.standard_normal(shape)  # distinct values: every window has one maximum
    xt = krypton.Tensor(x, requires_grad=True)
    y = F.max_pool2d(xt, kernel, stride)
    stride_pair = pair(kernel) if stride is None else pair(stride)
    np.testing.assert_array_equal(y.data, direct_pool(x, pair(kernel), stride_pair))
    upstream = rng.standard_normal(y.shape)
    y.backward(upstream)
    expected = numeric_grad(lambda: float(np.sum(direct_pool(x, pair(kernel), stride_pair)
                                                 * upstream)), x)
    np.testing.assert_allclose(xt.grad.data, expected, rtol=1e-6, atol=1e-6)


def test_a_tied_window_sends_its_gradient_to_the_first_maximum():
    x = krypton.Tensor(np.ones((1, 1, 2, 2)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    np.testing.assert_array_equal(x.grad.data, [[[[1.0, 0.0], [0.0, 0.0]]]])


# --------------------------------------------------------------------------------------------
# Against PyTorch


@pytest.mark.torch
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_and_its_gradients_match_pytorch(case):
    torch = pytest.importorskip("torch")
    n, c, h, w, o, k, stride, padding = case
    rng = np.random.default_rng(sum(case) + 7)
    arrays = [rng.standard_normal(s) for s in ((n, c, h, w), (o, c, k, k), (o,))]
    ours = [krypton.Tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    y = F.conv2d(*ours, stride=stride, padding=padding)
    ty = torch.nn.functional.conv2d(*theirs, stride=stride, padding=padding)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    upstream = rng.standard_normal(y.shape)
    y.backward(upstream)
    ty.backward(torch.from_numpy(upstream))
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad.data, reference.grad.numpy(), rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.torch
@pytest.mark.parametrize("shape, kernel, stride", POOL_CASES)
def test_max_pool2d_and_its_gradient_match_pytorch(shape, kernel, stride):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).standard_normal(shape)
    xt, tx = krypton.Tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    y, ty = F.max_pool2d(xt, kernel, stride), torch.nn.functional.max_pool2d(tx, kernel, stride)
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    upstream = np.random.default_rng(4).standard_normal(y.shape)
    y.backward(upstream)
    ty.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(xt.grad.data, tx.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.torch
def test_the_cnn_and_its_torch_twin_compute_the_same_logits_and_gradients():
    torch = pytest.importorskip("torch")
    model = train.build_cnn(seed=3)
    twin = train.build_torch_twin(model)
    images = np.random.default_rng(5).random((4, 784), dtype=np.float32)
    labels = np.array([0, 3, 9, 1])
    with krypton.backend("numpy"):
        loss = F.cross_entropy(model(krypton.Tensor(images)), labels)
        loss.backward()
    their_loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(images)),
                                                   torch.from_numpy(labels))
    their_loss.backward()
    assert abs(loss.item() - their_loss.item()) < 1e-5
    theirs = dict(twin.named_parameters())
    for name, parameter in model.named_parameters():
        np.testing.assert_allclose(parameter.grad.data, theirs[name].grad.numpy(), rtol=1e-4,
                                   atol=1e-5)


# --------------------------------------------------------------------------------------------
# The layers


def test_conv2d_layer_has_pytorchs_names_shapes_and_init_bounds():
    nn.manual_seed(0)
    layer = nn.Conv2d(3, 8, 5, stride=2, padding=1)
    assert layer.weight.shape == (8, 3, 5, 5) and layer.bias.shape == (8,)
    assert (layer.kernel_size, layer.stride, layer.padding) == ((5, 5), (2, 2), (1, 1))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    bound = 1 / np.sqrt(3 * 5 * 5)  # kaiming_uniform_(a=sqrt(5)) on fan_in = 75
    for parameter in (layer.weight, layer.bias):
        assert np.abs(parameter.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.9 * bound  # uniform over the whole range
    assert nn.Conv2d(3, 8, 3, bias=False).bias is None
    nn.manual_seed(0)
    np.testing.assert_array_equal(nn.Conv2d(3, 8, 5).weight.data, layer.weight.data)


def test_flatten_unflatten_and_pool_layers_shape_like_pytorch():
    x = krypton.Tensor(np.arange(2 * 784, dtype=np.float32).reshape(2, 784))
    images = nn.Unflatten(1, (1, 28, 28))(x)
    assert images.shape == (2, 1, 28, 28)
    assert nn.MaxPool2d(2)(images).shape == (2, 1, 14, 14)
    assert nn.MaxPool2d(3, stride=2)(images).shape == (2, 1, 13, 13)
    assert nn.Flatten()(images).shape == (2, 784)
    assert nn.Flatten(0, 1)(images).shape == (2, 28, 28)


def test_the_products_listed_are_the_products_a_training_step_makes(monkeypatch):
    seen = []
    compute = backends._compute

    def layout(x):  # a plain matrix, or the transposed view of one (krypton.timing.LAYOUTS)
        return "n" if x.flags.c_contiguous else "t" if x.flags.f_contiguous else "?"

    def recording(a, b):
        seen.append((a.shape[0], a.shape[1], b.shape[1], layout(a) + layout(b)))
        return compute(a, b)

    monkeypatch.setattr(backends, "_compute", recording)
    for model in (train.build_cnn(seed=0), train.build_mlp(seed=0)):
        seen.clear()
        images = np.random.default_rng(0).random((6, 784), dtype=np.float32)
        loss = F.cross_entropy(model(krypton.Tensor(images)), np.arange(6))
        loss.backward()
        listed = train.product_shapes(model, 6)
        assert sorted(seen) == sorted((p["m"], p["k"], p["n"], p["layout"]) for p in listed)
        assert sum(p["flops"] for p in listed) == sum(2 * m * k * n for m, k, n, _ in seen)


# --------------------------------------------------------------------------------------------
# Bad arguments name the shapes


@pytest.mark.parametrize("x_shape, w_shape, options, message", [
    ((3, 8, 8), (4, 3, 3, 3), {}, r"shape \(N, C, H, W\), got shape \(3, 8, 8\)"),
    ((1, 3, 8, 8), (4, 3, 3), {}, r"weight of shape \(out_channels, in_channels, kh, kw\)"),
    ((1, 2, 8, 8), (4, 3, 3, 3), {}, r"\(1, 2, 8, 8\) has 2 channels but the weight of shape "
                                     r"\(4, 3, 3, 3\) expects 3"),
    ((1, 3, 4, 8), (4, 3, 5, 5), {"padding": 0}, r"kernel 5x5 is larger than the padded input "
                                                 r"4x8 \(input of shape \(1, 3, 4, 8\)"),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"stride": 0}, "stride must be at least 1, got 0"),
    ((1, 3, 8, 8), (4, 3, 3, 3), {"padding": -1}, "padding must be at least 0, got -1"),
    ((1, 3, 8, 8), (0, 3, 3, 3), {}, r"weight of shape \(0, 3, 3, 3\) is empty"),
])
def test_conv2d_refuses_bad_arguments_naming_the_shapes(x_shape, w_shape, options, message):
    x, w = krypton.Tensor(np.zeros(x_shape)), krypton.Tensor(np.zeros(w_shape))
    with pytest.raises(ValueError, match=message):
        F.conv2d(x, w, **options)


def test_conv2d_refuses_a_bias_of_the_wrong_size_and_non_tensors():
    x, w = krypton.Tensor(np.zeros((1, 3, 8, 8))), krypton.Tensor(np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"bias of shape \(3,\) does not match the weight"):
        F.conv2d(x, w, krypton.Tensor(np.zeros(3)))
    with pytest.raises(TypeError, match="the input is a ndarray"):
        F.conv2d(np.zeros((1, 3, 8, 8)), w)
    with pytest.raises(TypeError, match="stride must be an int or a pair"):
        F.conv2d(x, w, stride=1.5)


@pytest.mark.parametrize("make, message", [
    (lambda: nn.Conv2d(0, 4, 3), "in_channels"),
    (lambda: nn.Conv2d(3, -1, 3), "out_channels"),
    (lambda: nn.Conv2d(3, 4, 0), "kernel_size must be at least 1, got 0"),
    (lambda: nn.Conv2d(3, 4, (3, 0)), r"kernel_size must be at least 1, got \(3, 0\)"),
    (lambda: nn.Conv2d(3, 4, 3, stride=0), "stride must be at least 1"),
    (lambda: nn.MaxPool2d(0), "kernel_size must be at least 1"),
    (lambda: nn.MaxPool2d(2, stride=-2), "stride must be at least 1"),
])
def test_layers_refuse_non_positive_sizes(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_max_pool2d_refuses_a_window_larger_than_the_image_and_wrong_ndim():
    with pytest.raises(ValueError, match=r"kernel 3x3 is larger than the padded input 2x5"):
        F.max_pool2d(krypton.Tensor(np.zeros((1, 1, 2, 5))), 3)
    with pytest.raises(ValueError, match=r"got shape \(2, 5\)"):
        F.max_pool2d(krypton.Tensor(np.zeros((2, 5))), 2)


# --------------------------------------------------------------------------------------------
# The CNN trains from the command line


def write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I",
                                                                       *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory) -> Path:
    """Fashion-MNIST-shaped files: class c has a bright square at column 2c."""
    root = tmp_path_factory.mktemp("toy") / "fashion-mnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 256), ("t10k", 64)):
        labels = rng.integers(0, 10, count)
        images = rng.integers(0, 60, (count, 28, 28))
        for row, label in enumerate(labels):
            images[row, 10:16, 2 * label:2 * label + 6] += 190
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "krypton.train", "--no-progress", *args],
                          capture_output=True, text=True, cwd=REPO, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.torch
def test_the_cli_trains_the_cnn_beside_its_torch_twin(toy_root):
    pytest.importorskip("torch")
    result = run_cli("--model", "cnn", "--dataset", "fashion-mnist", "--data-root",
                     str(toy_root), "--backend", "parallel", "--epochs", "1", "--batch-size",
                     "32", "--max-batches", "4", "--compare-torch", "--json",
                     str(toy_root / "run.json"))
    assert result.returncode == 0, result.stderr
    architecture = train.describe(train.build_cnn())
    assert f"Model: CNN {architecture};" in result.stdout
    document = json.loads((toy_root / "run.json").read_text())
    assert document["model"] == "cnn" and document["architecture"] == architecture
    assert "parallel epoch 1/1" in result.stdout and "torch epoch 1/1" in result.stdout
    losses = [line.split("train loss")[1].split()[0] for line in result.stdout.splitlines()
              if "epoch 1/1" in line]
    assert len(losses) == 2 and abs(float(losses[0]) - float(losses[1])) < 1e-3


def test_the_cli_refuses_sizes_for_the_cnn(toy_root):
    result = run_cli("--model", "cnn", "--sizes", "784", "10", "--data-root", str(toy_root))
    assert result.returncode == 2 and "the cnn's layers are fixed" in result.stderr


def test_the_cnn_learns_the_toy_classes():
    pixels = np.random.default_rng(1).integers(0, 60, (160, 28, 28))
    labels = np.random.default_rng(2).integers(0, 10, 160)
    for row, label in enumerate(labels):
        pixels[row, 10:16, 2 * label:2 * label + 6] += 190
    images = (pixels.reshape(160, 784) / 255).astype(np.float32)
    model = train.build_cnn(seed=0)
    opt = krypton.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = None
    with krypton.backend("parallel"):
        for step in range(30):
            batch = slice(32 * (step % 5), 32 * (step % 5) + 32)
            loss = F.cross_entropy(model(krypton.Tensor(images[batch])), labels[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
    assert loss.item() < 0.7 * first


# --------------------------------------------------------------------------------------------
# Conv2d + ReLU as one node, and the channels-first layout


@pytest.mark.parametrize("stride,padding", [(1, 0), (2, 1)])
def test_conv2d_relu_is_relu_of_conv2d_values_and_gradients(stride, padding):
    rng = np.random.default_rng(11)
    x = krypton.Tensor(rng.standard_normal((2, 3, 7, 6)), requires_grad=True)
    w = krypton.Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    b = krypton.Tensor(rng.standard_normal(4), requires_grad=True)
    upstream = rng.standard_normal((2, 4) + F.conv2d(x, w, b, stride, padding).shape[2:])
    fused_out = F.conv2d_relu(x, w, b, stride, padding)
    fused_out.backward(upstream)
    fused_grads = [t.grad.data.copy() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    plain = F.conv2d(x, w, b, stride, padding).relu()
    plain.backward(upstream)
    np.testing.assert_allclose(fused_out.data, plain.data, rtol=1e-12, atol=1e-12)
    for mine, reference in zip(fused_grads, (x, w, b)):
        np.testing.assert_allclose(mine, reference.grad.data, rtol=1e-10, atol=1e-12)


def test_conv2d_relu_gradients_match_finite_differences():
    rng = np.random.default_rng(12)
    x = rng.standard_normal((1, 2, 5, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    upstream = rng.standard_normal((1, 3, 5, 4))

    def loss(xv, wv):
        out = F.conv2d_relu(krypton.Tensor(xv), krypton.Tensor(wv), None, 1, 1)
        return float(np.sum(out.data * upstream))

    xt, wt = krypton.Tensor(x, requires_grad=True), krypton.Tensor(w, requires_grad=True)
    F.conv2d_relu(xt, wt, None, 1, 1).backward(upstream)
    for array, grad in ((x, xt.grad.data), (w, wt.grad.data)):
        numeric = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            saved = array[index]
            array[index] = saved + 1e-6
            up = loss(x, w)
            array[index] = saved - 1e-6
            down = loss(x, w)
            array[index] = saved
            numeric[index] = (up - down) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


def test_sequential_runs_conv_then_relu_as_one_node():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    x = krypton.Tensor(np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32))
    out = model(x)
    assert out._parents[0]._op == "Conv2dReLU"


def test_sequential_runs_conv_relu_then_pool_as_one_node():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2))
    x = krypton.Tensor(np.random.default_rng(0).random((2, 1, 6, 6), dtype=np.float32))
    assert model(x)._op == "Conv2dReLUMaxPool2d"
    with krypton.backend("numpy"):  # the reference: the three operations, conv and ReLU fused
        out = model(x)
    assert out._op == "MaxPool2d" and out._parents[0]._op == "Conv2dReLU"


# (input shape, weight shape, stride, padding, pool size, pool stride, bias)
RELU_POOL_CASES = [
    ((4, 3, 12, 10), (5, 3, 3, 3), 1, 1, 2, None, True),
    ((2, 2, 9, 11), (3, 2, 3, 3), 1, 0, 2, None, True),   # odd sizes: a row and column left over
    ((3, 1, 8, 8), (4, 1, 5, 5), 1, 2, (2, 3), (1, 2), True),  # overlapping windows
    ((1, 4, 7, 7), (2, 4, 1, 1), 2, 0, 3, 2, False),
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0, 1, None, True),    # a 1x1 output, a 1x1 pool
]


@pytest.mark.parametrize("case", RELU_POOL_CASES)
def test_conv2d_relu_pool_equals_the_three_operations(case):
    """The fused node (one C pass for bias, pooling and ReLU; ReLU after the pool) against the
    reference (conv2d_relu, then max_pool2d, in NumPy), in float32: the same values and
    gradients (those are checked against finite differences in float64 above)."""
    x_shape, w_shape, stride, padding, pool, pool_stride, with_bias = case
    rng = np.random.default_rng(len(x_shape) + sum(x_shape))
    arrays = [rng.standard_normal(x_shape).astype(np.float32),
              rng.standard_normal(w_shape).astype(np.float32),
              rng.standard_normal(w_shape[0]).astype(np.float32)]
    results = []
    for fused_on in (True, False):
        tensors = [krypton.Tensor(a.copy(), requires_grad=True) for a in arrays]
        bias = tensors[2] if with_bias else None
        with backends.fused_kernels(fused_on):
            y = F.conv2d_relu_pool(tensors[0], tensors[1], bias, stride, padding, pool,
                                   pool_stride)
            y.backward(np.random.default_rng(9).standard_normal(y.shape).astype(np.float32))
        results.append((y, tensors))
    (fast, fast_inputs), (reference, reference_inputs) = results
    assert fast._op == "Conv2dReLUMaxPool2d" and reference._op == "MaxPool2d"
    np.testing.assert_array_equal(fast.data, reference.data)
    for mine, theirs in zip(fast_inputs[:2 + with_bias], reference_inputs):
        np.testing.assert_allclose(mine.grad.data, theirs.grad.data, rtol=1e-5, atol=1e-5)
    assert not with_bias or fast_inputs[2].grad is not None


def test_conv2d_relu_pool_refuses_a_pool_larger_than_the_convolution():
    x = krypton.Tensor(np.ones((1, 1, 4, 4), np.float32))
    w = krypton.Tensor(np.ones((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input 2x2"):
        F.conv2d_relu_pool(x, w, None, 1, 0, 3)


def test_conv2d_output_is_a_channels_first_view_of_the_product():
    rng = np.random.default_rng(13)
    x = krypton.Tensor(rng.random((3, 2, 6, 5), dtype=np.float32))
    w = krypton.Tensor(rng.random((4, 2, 3, 3), dtype=np.float32))
    y = F.conv2d(x, w, None, 1, 1)
    assert y.shape == (3, 4, 6, 5)
    assert y.data.transpose(1, 0, 2, 3).flags.c_contiguous  # (O, N, Ho, Wo) in memory
    pooled = F.max_pool2d(y, 2)
    assert pooled.data.transpose(1, 0, 2, 3).flags.c_contiguous  # the pool keeps the layout


def test_conv2d_relu_refuses_bad_arguments_naming_the_shapes():
    x = krypton.Tensor(np.zeros((2, 3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"conv2d_relu.*\(2, 3, 8, 8\).*3 channels.*\(4, 2, 3, 3\)"):
        F.conv2d_relu(x, krypton.Tensor(np.zeros((4, 2, 3, 3), np.float32)))
    with pytest.raises(ValueError, match=r"kernel 9x9 is larger than the padded input 8x8"):
        F.conv2d_relu(x, krypton.Tensor(np.zeros((4, 3, 9, 9), np.float32)))


def test_describe_names_every_layer_of_the_cnn():
    text = train.describe(train.build_cnn())
    assert text.startswith("conv 1->16 3x3 pad 1, relu, max-pool 2, conv 16->32 3x3 pad 1")
    assert text.endswith("linear 1568->128, relu, linear 128->10")
