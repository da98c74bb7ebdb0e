"""MNIST and Fashion-MNIST: find, download, parse and batch them.

Both datasets ship as four IDX files (a tiny big-endian header, then raw unsigned bytes):
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and
``t10k-labels-idx1-ubyte``, usually gzipped. ``load_mnist`` looks for them, first hit wins, in:

1. the ``root`` argument (and ``<root>/<dataset>``);
2. the directory in ``$KRYPTON_DATA`` (and ``$KRYPTON_DATA/<dataset>``);
3. the user cache, ``$XDG_CACHE_HOME/krypton/datasets/<dataset>`` (``~/.cache/...`` by default);
4. for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).

If none has them and ``download=True``, the files are fetched from the mirrors in ``MIRRORS``
(overridable per dataset with ``$KRYPTON_MNIST_MIRRORS`` / ``$KRYPTON_FASHION_MNIST_MIRRORS``,
comma separated), checked against ``MD5_CHECKSUMS`` and moved into place only once verified, so an
interrupted download never leaves a file that looks complete.

``DataLoader`` (from ``krypton.batches``) walks the arrays in shuffled mini-batches, one epoch
per loop; ``load_data`` loads both splits, standardized, as a ``Data`` (what ``krypton.train``
trains on), and ``Data.loader`` batches its train split from the 8-bit pixels.
"""

from __future__ import annotations

import gzip
import http.client
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from krypton.batches import DataLoader, standardize_pixels
from krypton.files import download_verified

__all__ = [
    "CLASS_NAMES", "DATASETS", "DEBIAN_FASHION_MNIST_DIR", "DOWNLOAD_TIMEOUT", "Data",
    "DataLoader", "DatasetNotFoundError", "IDXFormatError", "MD5_CHECKSUMS", "MIRRORS", "SPLITS",
    "TRAIN_MEAN_STD", "load_data", "load_mnist", "read_idx",
]

DATASETS = ("mnist", "fashion-mnist")
SPLITS = ("train", "test")

# The split's file prefix, as the original distribution names it ("t10k" is the test split).
_SPLIT_PREFIX = {"train": "train", "test": "t10k"}

# Tried in order; each holds the four .gz files side by side.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

# MD5 of the published .gz files (the digests the datasets' authors and torchvision publish).
# MD5 is used to recognise the right file, not for security. Debian's dataset-fashion-mnist
# recompressed its copies, so its .gz digests differ; local files are checked by read_idx instead.
MD5_CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

# Mean and standard deviation of all pixels of the train split, scaled to [0, 1], rounded to four
# decimals. MNIST's are the values PyTorch's MNIST example uses; Fashion-MNIST's were computed from
# the 47,040,000 train pixels (0.28604, 0.35302). The test split is standardized with these too,
# so a model never sees statistics of the data it is evaluated on.
TRAIN_MEAN_STD: dict[str, tuple[float, float]] = {
    "mnist": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
}


def scale_shift(dataset: str) -> tuple[float, float]:
    """``(scale, shift)`` that standardize a pixel p of [0, 255] as ``p * scale + shift``: the
    train split's mean and std (``TRAIN_MEAN_STD``, of pixels in [0, 1]) folded into one
    multiply and one add, ``scale = 1 / (255 std)`` and ``shift = -mean / std``, in float32."""
    mean, std = TRAIN_MEAN_STD[dataset]
    return float(np.float32(1.0 / (255.0 * std))), float(np.float32(-mean / std))

DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

DOWNLOAD_TIMEOUT = 30.0  # seconds without progress before a mirror counts as dead

_IDX_UNSIGNED_BYTE = 0x08
_IDX_MAGIC_LABELS = 0x00000801
_IDX_MAGIC_IMAGES = 0x00000803
_GZIP_MAGIC = b"\x1f\x8b"
_IMAGE_SIDE = 28
_NUM_CLASSES = 10
_CHUNK_BYTES = 1 << 20

# Parsed uint8 arrays keyed by (path, mtime, size), so a replaced file is read again. They are
# read-only, and load_mnist always builds new float32/int64 arrays from them: a caller can scale or
# shuffle what it gets in place without corrupting what the next call returns.
_IDX_CACHE: dict[tuple[str, int, int], np.ndarray] = {}


class IDXFormatError(ValueError):
    """An IDX file is truncated, corrupt, or not the kind of file that was expected."""


class DatasetNotFoundError(FileNotFoundError):
    """No copy of the dataset was found locally and none could be downloaded."""


# --------------------------------------------------------------------------------------------
# IDX parsing


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of unsigned bytes (MNIST's format), gzipped or raw.

    Gzip is recognised by the file's first two bytes (1f 8b), not by its name. The header is
    validated (magic number 0x00000801 for labels or 0x00000803 for images) and the payload must be
    exactly as long as the dimensions say: a file that is short by one byte is an error, never a
    silently smaller dataset.

    Args:
        path: The file to read.

    Returns:
        A writable ``uint8`` array shaped by the header: ``(N,)`` for labels, ``(N, rows, cols)``
        for images.

    Raises:
        IDXFormatError: The file is truncated, has trailing bytes, a bad magic number, an element
            type other than unsigned byte, or a corrupt gzip stream. The message names the file.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not is_gzip:
            return _parse_idx_stream(raw, path, compressed=False)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _parse_idx_stream(stream, path, compressed=True)
        except (EOFError, gzip.BadGzipFile, zlib.error) as err:
            raise IDXFormatError(
                f"{path}: the gzip stream is truncated or corrupt ({err}); delete the file and "
                "download it again"
            ) from err


def _parse_idx_stream(stream: BinaryIO, path: Path, compressed: bool) -> np.ndarray:
    what = "decompressed data" if compressed else "file"
    magic_bytes = _read_exactly(stream, 4)
    if len(magic_bytes) < 4:
        raise IDXFormatError(
            f"{path}: {what} is {len(magic_bytes)} bytes long, too short for an IDX header "
            "(at least 4 bytes)"
        )
    zero1, zero2, dtype_code, ndim = magic_bytes
    magic = int.from_bytes(magic_bytes, "big")
    if zero1 != 0 or zero2 != 0:
        raise IDXFormatError(
            f"{path}: bad magic number 0x{magic:08x}, expected 0x{_IDX_MAGIC_LABELS:08x} (labels) "
            f"or 0x{_IDX_MAGIC_IMAGES:08x} (images); is this an MNIST-style IDX file?"
        )
    if dtype_code != _IDX_UNSIGNED_BYTE:
        raise IDXFormatError(
            f"{path}: element type byte is 0x{dtype_code:02x}, expected 0x08 (unsigned byte), "
            f"the only type MNIST and Fashion-MNIST use (magic number 0x{magic:08x})"
        )
    if magic not in (_IDX_MAGIC_LABELS, _IDX_MAGIC_IMAGES):
        raise IDXFormatError(
            f"{path}: magic number 0x{magic:08x} declares {ndim} dimensions, expected "
            f"0x{_IDX_MAGIC_LABELS:08x} (labels, 1 dimension) or 0x{_IDX_MAGIC_IMAGES:08x} "
            "(images, 3 dimensions)"
        )

    dims_bytes = _read_exactly(stream, 4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise IDXFormatError(
            f"{path}: header declares {ndim} dimensions ({4 * ndim} bytes) but the {what} ends "
            f"after {len(dims_bytes)} of them"
        )
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    expected = math.prod(shape)
    kind = {1: "label data", 3: "pixel data"}[ndim]

    # Read up to what the header promises, chunk by chunk, so a corrupt header that claims
    # terabytes fails on the missing bytes instead of on allocating them.
    payload = bytearray()
    while len(payload) < expected:
        chunk = stream.read(min(_CHUNK_BYTES, expected - len(payload)))
        if not chunk:
            break
        payload += chunk
    if len(payload) < expected:
        raise IDXFormatError(
            f"{path}: expected {expected} bytes of {kind} for shape {shape}, {what} has "
            f"{len(payload)}; the file is truncated, delete it and download it again"
        )
    trailing = _count_remaining(stream)
    if trailing:
        raise IDXFormatError(
            f"{path}: expected {expected} bytes of {kind} for shape {shape}, {what} has "
            f"{expected + trailing} ({trailing} trailing bytes); is the header from another file?"
        )
    # Copied once into memory NumPy allocates: NumPy asks Linux for transparent huge pages (2
    # MiB) for an array of 4 MiB or more, where a bytearray gets 4 KiB pages. A batch gathers
    # rows from all over the 47 MB of pixels, and on 4 KiB pages nearly every row is a TLB miss
    # and a page walk. Measure: time batches.gather_pixels of 128 random rows from
    # np.frombuffer(payload) and from this copy, in turns (AnonHugePages in /proc/self/smaps
    # says which pages each has).
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape).copy()


def _read_exactly(stream: BinaryIO, size: int) -> bytes:
    parts = []
    while size > 0:
        part = stream.read(size)
        if not part:
            break
        parts.append(part)
        size -= len(part)
    return b"".join(parts)


def _count_remaining(stream: BinaryIO) -> int:
    remaining = 0
    while chunk := stream.read(_CHUNK_BYTES):
        remaining += len(chunk)
    return remaining


def _read_idx_cached(path: Path) -> np.ndarray:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key not in _IDX_CACHE:
        array = read_idx(path)
        array.flags.writeable = False
        _IDX_CACHE[key] = array
    return _IDX_CACHE[key]


# --------------------------------------------------------------------------------------------
# Finding the files


def _file_stems(dataset: str, split: str) -> tuple[str, str]:
    prefix = _SPLIT_PREFIX[split]
    return f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"


def _accepted_names(stem: str) -> tuple[str, ...]:
    # "train-images.idx3-ubyte" is what some unpackers (notably on Windows) make of the original.
    dotted = stem.replace("-idx", ".idx")
    return (stem, f"{stem}.gz", dotted, f"{dotted}.gz")


def _find_in_dir(directory: Path, stem: str) -> Path | None:
    try:
        by_lower_name = {entry.name.lower(): entry for entry in directory.iterdir()}
    except OSError:
        return None
    for name in _accepted_names(stem):
        entry = by_lower_name.get(name)
        if entry is not None and entry.is_file():
            return entry
    return None


def _user_cache_dir(dataset: str) -> Path:
    xdg_cache = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore an empty or relative value.
    base = Path(xdg_cache) if os.path.isabs(xdg_cache) else Path.home() / ".cache"
    return base / "krypton" / "datasets" / dataset


def _candidate_dirs(dataset: str, root: str | os.PathLike | None) -> list[tuple[Path, str]]:
    candidates = []
    if root is not None:
        root = Path(root).expanduser()
        candidates += [(root, "root argument"), (root / dataset, "root argument")]
    env_dir = os.environ.get("KRYPTON_DATA")
    if env_dir:
        env_dir = Path(env_dir).expanduser()
        candidates += [(env_dir, "$KRYPTON_DATA"), (env_dir / dataset, "$KRYPTON_DATA")]
    candidates.append((_user_cache_dir(dataset), "user cache"))
    if dataset == "fashion-mnist":
        candidates.append((Path(DEBIAN_FASHION_MNIST_DIR), "Debian package dataset-fashion-mnist"))
    return candidates


def _describe_dir(directory: Path, stems: tuple[str, str]) -> str:
    if directory.exists() and not directory.is_dir():
        return "is a file, not a directory"
    if not directory.is_dir():
        return "does not exist"
    found = [_find_in_dir(directory, stem) for stem in stems]
    present = [path.name for path in found if path is not None]
    if present:
        return f"has only {', '.join(present)}"
    return "has neither file"


# --------------------------------------------------------------------------------------------
# Downloading


def _mirrors(dataset: str) -> tuple[str, ...]:
    env_var = _mirrors_env_var(dataset)
    override = os.environ.get(env_var, "")
    urls = tuple(url.strip() for url in override.split(",") if url.strip())
    return urls or MIRRORS[dataset]


def _mirrors_env_var(dataset: str) -> str:
    return f"KRYPTON_{dataset.upper().replace('-', '_')}_MIRRORS"


def _download_split(dataset: str, stems: tuple[str, str],
                    directory: Path) -> tuple[list[Path], list[str]]:
    """Download the split's files into directory: (paths, one line per failed attempt).

    paths is empty unless both files are in place.
    """
    paths: list[Path] = []
    failures: list[str] = []
    for stem in stems:
        name = f"{stem}.gz"
        destination = directory / name
        paths.append(destination)
        if destination.is_file():
            continue  # only a complete, verified download is ever renamed to this name
        for mirror in _mirrors(dataset):
            url = mirror.rstrip("/") + "/" + name
            try:
                download_verified(url, destination, MD5_CHECKSUMS[dataset][name],
                                  timeout=DOWNLOAD_TIMEOUT)
                break
            except (OSError, http.client.HTTPException, ValueError) as err:
                failures.append(f"{url}: {err}")
        else:
            return [], failures
    return paths, failures


# --------------------------------------------------------------------------------------------
# Loading


def _locate(dataset: str, split: str, root: str | os.PathLike | None,
            download: bool) -> tuple[Path, Path]:
    stems = _file_stems(dataset, split)
    candidates = _candidate_dirs(dataset, root)
    for directory, _ in candidates:
        images, labels = (_find_in_dir(directory, stem) for stem in stems)
        if images is not None and labels is not None:
            return images, labels

    download_dir = Path(root).expanduser() if root is not None else _user_cache_dir(dataset)
    failures: list[str] = []
    if download:
        paths, failures = _download_split(dataset, stems, download_dir)
        if paths:
            return paths[0], paths[1]
    raise DatasetNotFoundError(
        _not_found_message(dataset, split, stems, candidates, download, failures, download_dir)
    )


def _not_found_message(dataset: str, split: str, stems: tuple[str, str],
                       candidates: list[tuple[Path, str]], download: bool,
                       failures: list[str], download_dir: Path) -> str:
    lines = [
        f"Could not find the {dataset} {split} files "
        f"({stems[0]}[.gz] and {stems[1]}[.gz]). Looked in, in order:"
    ]
    env_dir_set = bool(os.environ.get("KRYPTON_DATA"))
    for directory, origin in candidates:
        if origin == "user cache" and not env_dir_set:
            lines.append("  - $KRYPTON_DATA: not set")
        lines.append(f"  - {directory} ({origin}): {_describe_dir(directory, stems)}")
    if download:
        lines.append(f"Downloading into {download_dir} failed:")
        lines += [f"  - {failure}" for failure in failures]
    else:
        lines.append("Downloading was not attempted (download=False).")
    lines.append("To fix, any one of:")
    if dataset == "fashion-mnist":
        lines.append(
            f"  - install the Debian package: apt-get install dataset-fashion-mnist "
            f"(puts the files in {DEBIAN_FASHION_MNIST_DIR})"
        )
    mirror = _mirrors(dataset)[0]
    all_names = ", ".join(MD5_CHECKSUMS[dataset])
    lines += [
        f"  - download the 4 files ({all_names}) from {mirror} into {_user_cache_dir(dataset)}",
        "  - put them in a directory and set KRYPTON_DATA to it, or pass root=<that directory>",
        f"  - if a proxy or mirror is needed, set {_mirrors_env_var(dataset)} to comma-separated "
        "base URLs and call with download=True",
    ]
    return "\n".join(lines)


def load_mnist(split: str = "train", dataset: str = "mnist",
               root: str | os.PathLike | None = None, download: bool = True, *,
               standardize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Load a split of MNIST or Fashion-MNIST as flat float images and integer labels.

    The files are looked for in ``root``, ``$KRYPTON_DATA``, the user cache and, for
    Fashion-MNIST, Debian's ``/usr/share/datasets/fashion-mnist``; first hit wins (see the module
    docstring). If none has them and ``download`` is true, they are downloaded into ``root`` if
    given, else into the user cache, and verified against ``MD5_CHECKSUMS``.

    Parsed files are cached in-process; every call still returns new arrays, so changing them in
    place is safe.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000 images).
        dataset: ``"mnist"`` (handwritten digits) or ``"fashion-mnist"`` (clothing, same format).
        root: A directory to look in first (also ``<root>/<dataset>``), and where downloads go.
        download: Whether to download the files when no local copy is found.
        standardize: Subtract the train split's pixel mean and divide by its standard deviation
            (``TRAIN_MEAN_STD``), for both splits, so pixels are roughly zero-mean, unit-variance
            instead of in [0, 1].

    Returns:
        ``(images, labels)``: ``images`` is float32 of shape ``(N, 784)``, one flattened 28x28
        image per row, with values in [0, 1] (unless ``standardize``); ``labels`` is int64 of shape
        ``(N,)`` with classes 0..9.

    Raises:
        ValueError: ``split`` or ``dataset`` is not one of the accepted names.
        NotADirectoryError: ``root`` is a file.
        IDXFormatError: A file is truncated or corrupt, or the image and label files disagree.
        DatasetNotFoundError: No local copy and no successful download; the message lists every
            place looked in and how to get the files.
    """
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    pixels, labels = _read_split(split, dataset, root, download)
    if standardize:  # the arithmetic DataLoader's gather of the pixels does (batches.py)
        return standardize_pixels(pixels, *scale_shift(dataset)), labels
    flat = pixels.astype(np.float32)
    flat /= 255.0
    return flat, labels


def _read_split(split: str, dataset: str, root: str | os.PathLike | None,
                download: bool) -> tuple[np.ndarray, np.ndarray]:
    """A split as its files hold it: uint8 pixels, one flattened image per row (a read-only view
    of the cached file), and int64 labels."""
    root_dir = None if root is None else Path(root).expanduser()
    if root_dir is not None and root_dir.exists() and not root_dir.is_dir():
        raise NotADirectoryError(
            f"root={os.fspath(root)!r} is a file, not a directory: pass the directory that "
            f"holds the IDX files (or should receive the download), e.g. "
            f"root={os.fspath(root_dir.parent)!r}"
        )
    images_path, labels_path = _locate(dataset, split, root, download)
    images = _read_idx_cached(images_path)
    labels = _read_idx_cached(labels_path)
    _check_pair(images, labels, images_path, labels_path)
    return images.reshape(len(images), _IMAGE_SIDE * _IMAGE_SIDE), labels.astype(np.int64)


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path: Path,
                labels_path: Path) -> None:
    if images.ndim != 3:
        raise IDXFormatError(
            f"{images_path}: expected an images file (magic 0x{_IDX_MAGIC_IMAGES:08x}), got one "
            f"of shape {images.shape}; are the images and labels files swapped?"
        )
    if labels.ndim != 1:
        raise IDXFormatError(
            f"{labels_path}: expected a labels file (magic 0x{_IDX_MAGIC_LABELS:08x}), got one "
            f"of shape {labels.shape}; are the images and labels files swapped?"
        )
    if images.shape[1:] != (_IMAGE_SIDE, _IMAGE_SIDE):
        raise IDXFormatError(
            f"{images_path}: expected {_IMAGE_SIDE}x{_IMAGE_SIDE} images, got "
            f"{images.shape[1]}x{images.shape[2]}"
        )
    if len(images) != len(labels):
        raise IDXFormatError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels; "
            "the two files must come from the same split of the same dataset"
        )
    if len(labels) and labels.max() >= _NUM_CLASSES:
        raise IDXFormatError(
            f"{labels_path}: labels must be 0..{_NUM_CLASSES - 1}, found {labels.max()}"
        )


# --------------------------------------------------------------------------------------------
# Both splits of a dataset, as training uses them


@dataclass
class Data:
    """The train and test splits of one dataset, standardized, and how they were found.
    ``load_data``'s ``train_images`` is read-only, since ``loader`` reads its batches from the
    pixels it was made from: copy it (``data.train_images.copy()``) to change it."""

    dataset: str
    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    note: str = ""
    train_pixels: np.ndarray | None = None   # uint8 (N, 784): what train_images standardize
    pixels_of: np.ndarray | None = field(default=None, repr=False, compare=False)
    """The array ``train_pixels`` were standardized into (``load_data``'s ``train_images``, kept
    read-only): ``loader`` reads the pixels only while ``train_images`` is that very array."""

    def loader(self, batch_size: int, shuffle: bool = True, seed: int = 0,
               drop_last: bool = False) -> DataLoader:
        """A ``DataLoader`` over the train split that reads each batch from the 8-bit pixels
        (a quarter of the bytes) and standardizes it on the way: the same batches as
        ``DataLoader(self.train_images, self.train_labels, ...)``. After
        ``dataclasses.replace`` gives new images, it reads those instead."""
        pixels = None
        if self.train_pixels is not None and self.train_images is self.pixels_of:
            pixels = self.train_pixels, *scale_shift(self.dataset)
        return DataLoader(self.train_images, self.train_labels, batch_size, shuffle, seed,
                          drop_last, pixels=pixels)

    @property
    def classes(self) -> tuple[str, ...]:
        return CLASS_NAMES[self.dataset]


CLASS_NAMES = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
}


def load_data(dataset: str | None = None, root: str | os.PathLike | None = None,
              download: bool = True) -> Data:
    """Load the train and test splits, standardized with the train split's mean and std.

    Args:
        dataset: "mnist" or "fashion-mnist". ``None`` means MNIST when a copy can be found or
            downloaded, and Fashion-MNIST otherwise; ``Data.note`` then says so.
        root: A directory to look in first (see ``load_mnist``).
        download: Whether to try downloading a dataset that is not found locally.

    Raises:
        krypton.data.DatasetNotFoundError: The dataset asked for (or, with ``None``, neither
            dataset) is not available; the message says where it looked and how to get it.
    """
    if dataset is not None:
        return _load_splits(dataset, root, download, note="")
    try:
        return _load_splits("mnist", root, download, note="")
    except DatasetNotFoundError as mnist_error:
        try:
            return _load_splits(
                "fashion-mnist", root, download,
                note="MNIST is not available here (no local copy, and the download failed: "
                     "offline?), so this run uses Fashion-MNIST, the same format with clothes "
                     "instead of digits. Pass --dataset to choose.")
        except DatasetNotFoundError as fashion_error:
            raise DatasetNotFoundError(
                f"{mnist_error}\n\nFashion-MNIST, the fallback, is not available either:\n"
                f"{fashion_error}") from None


def _load_splits(dataset: str, root, download: bool, note: str) -> Data:
    pixels, train_labels = _read_split("train", dataset, root, download)
    train_images = standardize_pixels(pixels, *scale_shift(dataset))
    train_images.flags.writeable = False   # Data.loader's batches come from the pixels
    test_images, test_labels = load_mnist("test", dataset, root, download, standardize=True)
    return Data(dataset, train_images, train_labels, test_images, test_labels, note, pixels,
                pixels_of=train_images)


def find_local(dataset: str) -> Path | None:
    """Where both splits of ``dataset`` are on this machine (the train images' file), or None.

    Looks where ``load_mnist`` looks ($KRYPTON_DATA, the user cache, Debian's directory for
    Fashion-MNIST) and never downloads: a cheap answer to "can training run offline here?".
    """
    try:
        for split in SPLITS:
            images, _ = _locate(dataset, split, None, download=False)
            if split == "train":
                found = images
    except DatasetNotFoundError:
        return None
    return found
