"""Tests for krypton.data: the IDX parser, file lookup, downloads and mini-batches.

Fixtures are tiny IDX files written here, with headers packed by hand (struct), so the parser is
checked against the format, not against itself. Downloads run for real against a local HTTP server
on 127.0.0.1. Every test sees a private HOME, XDG cache and Debian directory, and mirrors that point
at a closed local port: no test touches the real user cache or the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from krypton import data

IMAGE_MAGIC = 0x00000803
LABEL_MAGIC = 0x00000801
REAL_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# --------------------------------------------------------------------------------------------
# Fixture generator


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The IDX encoding of a uint8 array: magic, big-endian uint32 dims, then the bytes."""
    if magic is None:
        magic = 0x00000800 | array.ndim
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_file(path: Path, payload: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def sample_split(count: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    images[0, 0, 0], images[0, 0, 1] = 0, 255  # both ends of the range
    labels = (np.arange(count) % 10).astype(np.uint8)
    return images, labels


def write_split(directory: Path, split: str = "train", count: int = 12, compress: bool = True,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    images, labels = sample_split(count, seed)
    suffix = ".gz" if compress else ""
    images_stem, labels_stem = SPLIT_FILES[split]
    write_file(directory / f"{images_stem}{suffix}", idx_bytes(images), compress)
    write_file(directory / f"{labels_stem}{suffix}", idx_bytes(labels), compress)
    return images, labels


def expected_floats(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), 784).astype(np.float64) / 255.0).astype(np.float32)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg-cache"))
    monkeypatch.delenv("KRYPTON_DATA", raising=False)
    # Port 9 (discard) is closed on 127.0.0.1: a download attempt fails at once, offline.
    monkeypatch.setenv("KRYPTON_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setenv("KRYPTON_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", home / "no-debian-package")
    monkeypatch.setattr(data, "_IDX_CACHE", {})
    return home


def cache_dir(home: Path, dataset: str) -> Path:
    return home / "xdg-cache" / "krypton" / "datasets" / dataset


# --------------------------------------------------------------------------------------------
# IDX parser


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_round_trips_images_and_labels(tmp_path, compress):
    images, labels = sample_split()
    images_path = write_file(tmp_path / "imgs", idx_bytes(images), compress)
    labels_path = write_file(tmp_path / "lbls", idx_bytes(labels), compress)

    read_images = data.read_idx(images_path)
    read_labels = data.read_idx(labels_path)

    assert read_images.dtype == np.uint8 and read_images.shape == (12, 28, 28)
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)
    # In memory NumPy allocated (huge pages for a large array), not a view of the read buffer.
    assert read_images.flags.owndata and read_images.flags.writeable


def test_read_idx_detects_gzip_by_content_not_name(tmp_path):
    images, _ = sample_split()
    path = write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(images), compress=True)
    np.testing.assert_array_equal(data.read_idx(path), images)


def test_read_idx_rejects_bad_magic(tmp_path):
    images, _ = sample_split()
    path = write_file(tmp_path / "bad-magic", idx_bytes(images, magic=0x12340803))
    with pytest.raises(data.IDXFormatError, match=r"bad-magic.*bad magic number 0x12340803"):
        data.read_idx(path)


def test_read_idx_rejects_unsupported_dimension_count(tmp_path):
    path = write_file(tmp_path / "two-d", idx_bytes(np.zeros((3, 4), np.uint8)))
    with pytest.raises(data.IDXFormatError, match=r"two-d.*0x00000802"):
        data.read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_element_type_other_than_unsigned_byte(tmp_path, compress):
    images, _ = sample_split()
    path = write_file(tmp_path / "floats", idx_bytes(images, magic=0x00000D03), compress)
    with pytest.raises(data.IDXFormatError, match=r"floats.*element type byte is 0x0d"):
        data.read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_read_idx_rejects_truncated_payload(tmp_path, compress):
    images, _ = sample_split()
    whole = idx_bytes(images)
    path = write_file(tmp_path / "short-images", whole[:16 + 1000], compress)
    message = rf"short-images.*expected {12 * 784} bytes of pixel data.* has 1000"
    with pytest.raises(data.IDXFormatError, match=message):
        data.read_idx(path)


def test_read_idx_rejects_truncated_labels_and_header(tmp_path):
    _, labels = sample_split()
    short_labels = write_file(tmp_path / "short-labels", idx_bytes(labels)[:-1])
    with pytest.raises(data.IDXFormatError, match=r"short-labels.*12 bytes of label data.* 11"):
        data.read_idx(short_labels)
    short_header = write_file(tmp_path / "short-header", idx_bytes(labels)[:6])
    with pytest.raises(data.IDXFormatError, match=r"short-header.*header declares 1 dimension"):
        data.read_idx(short_header)
    empty = write_file(tmp_path / "empty", b"")
    with pytest.raises(data.IDXFormatError, match=r"empty.*too short for an IDX header"):
        data.read_idx(empty)


def test_read_idx_rejects_trailing_bytes(tmp_path):
    _, labels = sample_split()
    path = write_file(tmp_path / "long-labels", idx_bytes(labels) + b"\x00\x01")
    with pytest.raises(data.IDXFormatError, match=r"long-labels.*2 trailing bytes"):
        data.read_idx(path)


def test_read_idx_rejects_cut_off_gzip_stream(tmp_path):
    images, _ = sample_split()
    compressed = gzip.compress(idx_bytes(images))
    path = write_file(tmp_path / "cut.gz", compressed[: len(compressed) // 2])
    with pytest.raises(data.IDXFormatError, match=r"cut\.gz.*gzip stream is truncated"):
        data.read_idx(path)


def test_idx_format_error_is_a_value_error():
    assert issubclass(data.IDXFormatError, ValueError)


def test_load_mnist_rejects_image_and_label_count_mismatch(tmp_path):
    images, _ = sample_split(count=12)
    _, labels = sample_split(count=11)
    write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    message = r"train-images-idx3-ubyte has 12 images but .*train-labels-idx1-ubyte has 11 labels"
    with pytest.raises(data.IDXFormatError, match=message):
        data.load_mnist(root=tmp_path, download=False)


def test_load_mnist_rejects_swapped_files(tmp_path):
    images, labels = sample_split()
    write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(labels))
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(images))
    with pytest.raises(data.IDXFormatError, match=r"train-images-idx3-ubyte.*swapped"):
        data.load_mnist(root=tmp_path, download=False)


def test_load_mnist_rejects_labels_outside_zero_to_nine(tmp_path):
    images, labels = sample_split()
    labels[3] = 10
    write_file(tmp_path / "train-images-idx3-ubyte", idx_bytes(images))
    write_file(tmp_path / "train-labels-idx1-ubyte", idx_bytes(labels))
    with pytest.raises(data.IDXFormatError, match=r"labels must be 0\.\.9, found 10"):
        data.load_mnist(root=tmp_path, download=False)


# --------------------------------------------------------------------------------------------
# load_mnist on fixtures


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_returns_flat_floats_in_unit_range_and_int64_labels(tmp_path, split,
                                                                        compress):
    images, labels = write_split(tmp_path, split, compress=compress)

    x, y = data.load_mnist(split, root=tmp_path, download=False)

    assert x.dtype == np.float32 and x.shape == (12, 784)
    assert y.dtype == np.int64 and y.shape == (12,)
    assert x.min() == 0.0 and x.max() == 1.0
    np.testing.assert_array_equal(x, expected_floats(images))
    np.testing.assert_array_equal(y, labels.astype(np.int64))


def test_load_mnist_standardizes_with_train_constants(tmp_path):
    images, _ = write_split(tmp_path, "test")
    mean, std = data.TRAIN_MEAN_STD["mnist"]
    expected = (images.reshape(12, 784).astype(np.float64) / 255.0 - mean) / std

    x, _ = data.load_mnist("test", root=tmp_path, download=False, standardize=True)

    assert x.dtype == np.float32
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-6)


def test_load_mnist_results_can_be_changed_without_corrupting_the_next_call(tmp_path):
    images, labels = write_split(tmp_path)
    x, y = data.load_mnist(root=tmp_path, download=False)
    x *= 0.0
    y[:] = 7

    x_again, y_again = data.load_mnist(root=tmp_path, download=False)

    np.testing.assert_array_equal(x_again, expected_floats(images))
    np.testing.assert_array_equal(y_again, labels)


def test_load_mnist_rejects_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ValueError, match=r"dataset must be one of .*got 'cifar'"):
        data.load_mnist(dataset="cifar", root=tmp_path, download=False)
    with pytest.raises(ValueError, match=r"split must be one of .*got 'validation'"):
        data.load_mnist("validation", root=tmp_path, download=False)


# --------------------------------------------------------------------------------------------
# Lookup order and the not-found message


def test_lookup_prefers_root_then_krypton_data_then_user_cache(tmp_path, monkeypatch,
                                                               isolated_environment):
    root, env_dir = tmp_path / "root", tmp_path / "env"
    from_root, _ = write_split(root, seed=1)
    from_env, _ = write_split(env_dir / "mnist", seed=2)
    from_cache, _ = write_split(cache_dir(isolated_environment, "mnist"), seed=3)
    monkeypatch.setenv("KRYPTON_DATA", str(env_dir))

    x, _ = data.load_mnist(root=root, download=False)
    np.testing.assert_array_equal(x, expected_floats(from_root))
    x, _ = data.load_mnist(download=False)
    np.testing.assert_array_equal(x, expected_floats(from_env))
    monkeypatch.delenv("KRYPTON_DATA")
    x, _ = data.load_mnist(download=False)
    np.testing.assert_array_equal(x, expected_floats(from_cache))


def test_lookup_falls_through_an_explicit_root_without_the_files(tmp_path, monkeypatch):
    env_dir = tmp_path / "env"
    from_env, _ = write_split(env_dir)  # directly in $KRYPTON_DATA, no dataset subdirectory
    monkeypatch.setenv("KRYPTON_DATA", str(env_dir))

    x, _ = data.load_mnist(root=tmp_path / "empty-root", download=False)

    np.testing.assert_array_equal(x, expected_floats(from_env))


def test_user_cache_defaults_to_home_dot_cache(monkeypatch, isolated_environment):
    monkeypatch.delenv("XDG_CACHE_HOME")
    images, _ = write_split(isolated_environment / ".cache" / "krypton" / "datasets" / "mnist")
    x, _ = data.load_mnist(download=False)
    np.testing.assert_array_equal(x, expected_floats(images))


def test_fashion_mnist_is_found_in_the_debian_directory_last(tmp_path, monkeypatch,
                                                             isolated_environment):
    debian_dir = tmp_path / "debian"
    from_debian, _ = write_split(debian_dir, "test")
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian_dir)

    x, _ = data.load_mnist("test", "fashion-mnist", download=False)
    np.testing.assert_array_equal(x, expected_floats(from_debian))

    from_cache, _ = write_split(cache_dir(isolated_environment, "fashion-mnist"), "test", seed=5)
    x, _ = data.load_mnist("test", "fashion-mnist", download=False)
    np.testing.assert_array_equal(x, expected_floats(from_cache))
    with pytest.raises(data.DatasetNotFoundError):
        data.load_mnist("test", "mnist", download=False)  # the Debian directory is Fashion-only


def test_lookup_accepts_other_cases_and_dotted_names(tmp_path):
    images, labels = sample_split()
    write_file(tmp_path / "TRAIN-IMAGES.IDX3-UBYTE", idx_bytes(images))
    write_file(tmp_path / "Train-Labels-idx1-ubyte.GZ", idx_bytes(labels), compress=True)

    x, y = data.load_mnist(root=tmp_path, download=False)

    np.testing.assert_array_equal(x, expected_floats(images))
    np.testing.assert_array_equal(y, labels)


def test_not_found_error_lists_every_place_looked_and_how_to_fix(tmp_path, monkeypatch,
                                                                 isolated_environment):
    root, env_dir = tmp_path / "root", tmp_path / "env"
    root.mkdir()
    images, _ = sample_split()
    write_file(root / "t10k-images-idx3-ubyte.gz", idx_bytes(images), compress=True)
    monkeypatch.setenv("KRYPTON_DATA", str(env_dir))
    debian_dir = tmp_path / "debian"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", debian_dir)

    with pytest.raises(data.DatasetNotFoundError) as caught:
        data.load_mnist("test", "fashion-mnist", root=root, download=False)

    message = str(caught.value)
    assert isinstance(caught.value, FileNotFoundError)
    for place in [root, root / "fashion-mnist", env_dir, env_dir / "fashion-mnist",
                  cache_dir(isolated_environment, "fashion-mnist"), debian_dir]:
        assert f"{place} (" in message
    assert "has only t10k-images-idx3-ubyte.gz" in message
    assert "download=False" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "KRYPTON_DATA" in message
    assert "t10k-labels-idx1-ubyte.gz" in message
    places = [message.index(f"{place} (") for place in [root, env_dir, debian_dir]]
    assert places == sorted(places)


def test_not_found_error_when_offline_reports_the_failed_download(isolated_environment):
    with pytest.raises(data.DatasetNotFoundError) as caught:
        data.load_mnist("train", "mnist")
    message = str(caught.value)
    assert "$KRYPTON_DATA: not set" in message
    assert "http://127.0.0.1:9/train-images-idx3-ubyte.gz" in message
    assert f"into {cache_dir(isolated_environment, 'mnist')}" in message
    assert "dataset-fashion-mnist" not in message  # that package only has Fashion-MNIST


# --------------------------------------------------------------------------------------------
# Downloads against a local HTTP server


class _FixtureHandler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes, int]] = {}  # path -> (status, body, Content-Length)
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (the name http.server dispatches to)
        self.requests.append(self.path)
        status, body, declared_length = self.routes.get(self.path, (404, b"not found", 9))
        self.send_response(status)
        self.send_header("Content-Length", str(declared_length))
        self.end_headers()
        self.wfile.write(body)
        # HTTP/1.0: returning closes the connection, so a short body ends in EOF, not a hang.

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    handler = type("Handler", (_FixtureHandler,), {"routes": {}, "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def serve_split(server, prefix: str, split: str = "train") -> dict[str, str]:
    """Serve a gzipped fixture split under prefix; return the files' md5s."""
    images, labels = sample_split()
    checksums = {}
    for stem, array in zip(SPLIT_FILES[split], (images, labels)):
        body = gzip.compress(idx_bytes(array))
        server.RequestHandlerClass.routes[f"{prefix}/{stem}.gz"] = (200, body, len(body))
        checksums[f"{stem}.gz"] = hashlib.md5(body).hexdigest()
    return checksums


def leftover_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


def test_download_verifies_checksum_and_caches_the_files(http_server, monkeypatch,
                                                          isolated_environment):
    checksums = serve_split(http_server, "/mirror")
    monkeypatch.setitem(data.MD5_CHECKSUMS, "mnist", checksums)
    monkeypatch.setenv("KRYPTON_MNIST_MIRRORS", f"{http_server.base_url}/mirror/")
    images, labels = sample_split()

    x, y = data.load_mnist("train", "mnist")

    np.testing.assert_array_equal(x, expected_floats(images))
    np.testing.assert_array_equal(y, labels)
    assert leftover_files(cache_dir(isolated_environment, "mnist")) == sorted(checksums)
    requests_before = list(http_server.RequestHandlerClass.requests)
    data.load_mnist("train", "mnist")
    assert http_server.RequestHandlerClass.requests == requests_before  # served from the cache


def test_download_goes_into_an_explicit_root(http_server, monkeypatch, tmp_path):
    monkeypatch.setitem(data.MD5_CHECKSUMS, "mnist", serve_split(http_server, "/mirror", "test"))
    monkeypatch.setenv("KRYPTON_MNIST_MIRRORS", f"{http_server.base_url}/mirror/")

    data.load_mnist("test", root=tmp_path / "mine")

    assert leftover_files(tmp_path / "mine") == [
        "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


def test_download_with_bad_checksum_fails_and_leaves_no_file(http_server, monkeypatch,
                                                             isolated_environment):
    checksums = serve_split(http_server, "/mirror")
    monkeypatch.setitem(data.MD5_CHECKSUMS, "mnist", {name: "0" * 32 for name in checksums})
    monkeypatch.setenv("KRYPTON_MNIST_MIRRORS", f"{http_server.base_url}/mirror/")

    with pytest.raises(data.DatasetNotFoundError, match=r"checksum mismatch: expected md5 0{32}"):
        data.load_mnist("train", "mnist")

    assert leftover_files(cache_dir(isolated_environment, "mnist")) == []


def test_interrupted_download_fails_and_leaves_no_file(http_server, monkeypatch,
                                                       isolated_environment):
    checksums = serve_split(http_server, "/mirror")
    monkeypatch.setitem(data.MD5_CHECKSUMS, "mnist", checksums)
    routes = http_server.RequestHandlerClass.routes
    path = "/mirror/train-images-idx3-ubyte.gz"
    status, body, length = routes[path]
    routes[path] = (status, body[: length // 2], length)  # promises more than it sends
    monkeypatch.setenv("KRYPTON_MNIST_MIRRORS", f"{http_server.base_url}/mirror/")

    with pytest.raises(data.DatasetNotFoundError,
                       match=rf"interrupted: received {length // 2} of {length} bytes"):
        data.load_mnist("train", "mnist")

    assert leftover_files(cache_dir(isolated_environment, "mnist")) == []


def test_download_tries_the_next_mirror_after_a_404(http_server, monkeypatch):
    monkeypatch.setitem(data.MD5_CHECKSUMS, "fashion-mnist", serve_split(http_server, "/good"))
    base = http_server.base_url
    monkeypatch.setenv("KRYPTON_FASHION_MNIST_MIRRORS", f"{base}/missing/, {base}/good")
    images, _ = sample_split()

    x, _ = data.load_mnist("train", "fashion-mnist")

    np.testing.assert_array_equal(x, expected_floats(images))
    assert http_server.RequestHandlerClass.requests == [
        "/missing/train-images-idx3-ubyte.gz", "/good/train-images-idx3-ubyte.gz",
        "/missing/train-labels-idx1-ubyte.gz", "/good/train-labels-idx1-ubyte.gz",
    ]


def test_mirrors_default_to_the_module_table(monkeypatch, http_server):
    monkeypatch.delenv("KRYPTON_MNIST_MIRRORS")
    monkeypatch.setitem(data.MD5_CHECKSUMS, "mnist", serve_split(http_server, "/table"))
    monkeypatch.setitem(data.MIRRORS, "mnist", (f"{http_server.base_url}/table/",))
    data.load_mnist("train", "mnist")
    assert http_server.RequestHandlerClass.requests[0] == "/table/train-images-idx3-ubyte.gz"


# --------------------------------------------------------------------------------------------
# The real Fashion-MNIST from Debian's dataset-fashion-mnist


@pytest.mark.skipif(not (REAL_DEBIAN_DIR / "train-labels-idx1-ubyte.gz").exists(),
                    reason="Fashion-MNIST is not installed: sudo apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist_from_the_debian_package(monkeypatch):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", REAL_DEBIAN_DIR)

    x_train, y_train = data.load_mnist("train", "fashion-mnist", download=False)
    x_test, y_test = data.load_mnist("test", "fashion-mnist", download=False)

    assert x_train.shape == (60000, 784) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 784) and y_test.shape == (10000,)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0
    assert set(np.unique(y_train)) == set(range(10)) == set(np.unique(y_test))
    np.testing.assert_array_equal(np.bincount(y_train, minlength=10), np.full(10, 6000))
    mean, std = data.TRAIN_MEAN_STD["fashion-mnist"]
    assert abs(x_train.mean(dtype=np.float64) - mean) < 1e-4
    assert abs(x_train.std(dtype=np.float64) - std) < 1e-4


# --------------------------------------------------------------------------------------------
# Mini-batches


def toy_arrays(count: int = 10) -> tuple[np.ndarray, np.ndarray]:
    images = np.arange(count * 3, dtype=np.float32).reshape(count, 3)
    return images, np.arange(count)


def epoch_labels(loader) -> list[np.ndarray]:
    return [y for _, y in loader]


def test_batches_cover_every_sample_once_per_epoch_and_keep_pairs_together():
    images, labels = toy_arrays(10)
    loader = data.DataLoader(images, labels, batch_size=3)
    for _ in range(3):
        seen = []
        for x, y in loader:
            np.testing.assert_array_equal(x, images[y])
            seen.append(y)
        assert [len(y) for y in seen] == [3, 3, 3, 1]
        assert sorted(np.concatenate(seen).tolist()) == list(range(10))
    assert len(loader) == 4


def test_batches_are_deterministic_per_seed_and_differ_across_epochs():
    images, labels = toy_arrays(50)
    first = data.DataLoader(images, labels, batch_size=50, seed=3)
    second = data.DataLoader(images, labels, batch_size=50, seed=3)

    epochs_first = [epoch_labels(first)[0] for _ in range(3)]
    epochs_second = [epoch_labels(second)[0] for _ in range(3)]

    for a, b in zip(epochs_first, epochs_second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(epochs_first[0], epochs_first[1])
    assert not np.array_equal(epochs_first[1], epochs_first[2])
    np.testing.assert_array_equal(epochs_first[0], np.random.default_rng(3).permutation(50))
    np.testing.assert_array_equal(epochs_first[2], np.random.default_rng(5).permutation(50))
    other_seed = epoch_labels(data.DataLoader(images, labels, batch_size=50, seed=4))[0]
    assert not np.array_equal(other_seed, epochs_first[0])


def test_set_epoch_replays_an_epoch():
    images, labels = toy_arrays(20)
    loader = data.DataLoader(images, labels, batch_size=7, seed=1)
    epoch0, epoch1 = epoch_labels(loader), epoch_labels(loader)
    loader.set_epoch(1)
    for a, b in zip(epoch_labels(loader), epoch1):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(np.concatenate(epoch0), np.concatenate(epoch1))


def test_batches_without_shuffle_keep_order():
    images, labels = toy_arrays(7)
    ys = epoch_labels(data.DataLoader(images, labels, batch_size=3, shuffle=False))
    assert [y.tolist() for y in ys] == [[0, 1, 2], [3, 4, 5], [6]]


def test_drop_last_skips_the_short_final_batch():
    images, labels = toy_arrays(10)
    loader = data.DataLoader(images, labels, batch_size=3, drop_last=True)
    ys = epoch_labels(loader)
    assert len(loader) == len(ys) == 3
    assert all(len(y) == 3 for y in ys)
    assert len(set(np.concatenate(ys).tolist())) == 9
    assert len(data.DataLoader(images, labels, batch_size=11, drop_last=True)) == 0
    assert len(data.DataLoader(images, labels, batch_size=10, drop_last=True)) == 1


def test_batches_are_copies():
    images, labels = toy_arrays(6)
    for x, y in data.DataLoader(images, labels, batch_size=2, shuffle=False):
        x[:] = -1
        y[:] = -1
    np.testing.assert_array_equal(images, toy_arrays(6)[0])
    np.testing.assert_array_equal(labels, toy_arrays(6)[1])


def test_batches_reject_bad_arguments():
    images, labels = toy_arrays(6)
    with pytest.raises(ValueError, match=r"same length, got 6 images and 5 labels"):
        data.DataLoader(images, labels[:5], batch_size=2)
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, got 0"):
        data.DataLoader(images, labels, batch_size=0)
