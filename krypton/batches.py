"""Mini-batches: ``DataLoader``, and the gathers that copy each batch out of a dataset in C
(csrc/fused.c's ``kr_gather_rows`` and ``kr_gather_pixels``), each beside its NumPy reference.

A training step starts by copying its samples, scattered over a dataset far larger than the
caches, into one array. ``gather_rows`` copies rows of any array; ``gather_pixels`` reads 8-bit
images and standardizes them on the way (``standardize_pixels``), a quarter of the bytes a
float32 copy of the dataset would read. ``DataLoader`` runs the C gathers where
``krypton.backends.uses_fused()``, the references elsewhere; ``krypton.data.Data.loader`` hands
it a dataset's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from krypton import backends
from krypton.checks import positive_int
from krypton.fused import _check, _pointer, _threads, compiled


# --------------------------------------------------------------------------------------------
# The gathers


def _scalar32(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(np.float32(value))


def _indices(indices: Any) -> np.ndarray:
    indices = np.asarray(indices)
    if indices.ndim != 1 or (indices.dtype.kind not in "iu" and indices.size):
        raise TypeError(f"indices must be a 1-D array of integers, got dtype {indices.dtype} "
                        f"and shape {indices.shape}")
    return np.ascontiguousarray(indices, dtype=np.int64)


def _check_gather(code: int, function: str, indices: np.ndarray, rows: int) -> None:
    if code != 0:  # C refuses a bad index before copying: name the first one
        bad = indices[(indices < 0) | (indices >= rows)]
        if len(bad):
            raise IndexError(f"index {bad[0]} is out of range for an array of {rows} "
                             f"rows (indices must be 0..{rows - 1})")
    _check(code, function)


def gather_rows(array: np.ndarray, indices: Any, threads: int = 1) -> np.ndarray:
    """``array[indices]`` for a C-contiguous ``array`` and 1-D integer ``indices`` in
    ``0..len(array)-1``: a new array, its rows copied in one pass (a large batch split over up
    to ``threads`` threads; the result is the same)."""
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or array.ndim < 1:
        raise ValueError("gather_rows takes a C-contiguous NumPy array of at least one "
                         "dimension: pass np.ascontiguousarray(array), or index it with NumPy")
    if array.dtype.hasobject:  # copying the bytes of Python objects would skip their counts
        raise TypeError(f"gather_rows copies numbers, not Python objects (dtype "
                        f"{array.dtype}): index the array with NumPy")
    indices = _indices(indices)
    out = np.empty((len(indices),) + array.shape[1:], dtype=array.dtype)
    module = compiled()
    ffi = module.ffi
    code = module.lib.kr_gather_rows(len(indices), array.itemsize * math.prod(array.shape[1:]),
                                     ffi.from_buffer(array), len(array),
                                     _pointer(ffi, "int64_t[]", indices), ffi.from_buffer(out),
                                     _threads(threads))
    _check_gather(code, "kr_gather_rows", indices, len(array))
    return out


def gather_rows_numpy(array: np.ndarray, indices: Any, threads: int = 1) -> np.ndarray:
    """The NumPy reference of ``gather_rows`` (``threads`` unused)."""
    return array[np.asarray(indices)]


def gather_pixels(pixels: np.ndarray, indices: Any, scale: float, shift: float,
                  threads: int = 1) -> np.ndarray:
    """``standardize_pixels(pixels[indices], scale, shift)`` in one pass: the rows of a 2-D
    uint8 ``pixels`` array (one image per row) at ``indices``, as float32 ``p * scale + shift``
    (a batch read as bytes, a quarter of what float32 images would take from memory)."""
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2 \
            or not pixels.flags.c_contiguous:
        got = (f"{pixels.dtype} array of shape {pixels.shape}" if isinstance(pixels, np.ndarray)
               else type(pixels).__name__)
        raise TypeError(f"gather_pixels takes a C-contiguous 2-D uint8 array (one image per "
                        f"row), got a {got}: for other arrays use gather_rows")
    indices = _indices(indices)
    out = np.empty((len(indices), pixels.shape[1]), dtype=np.float32)
    module = compiled()
    ffi = module.ffi
    code = module.lib.kr_gather_pixels(len(indices), pixels.shape[1],
                                       ffi.from_buffer("unsigned char[]", pixels),
                                       len(pixels), _pointer(ffi, "int64_t[]", indices),
                                       _scalar32("scale", scale), _scalar32("shift", shift),
                                       ffi.from_buffer("float[]", out), _threads(threads))
    _check_gather(code, "kr_gather_pixels", indices, len(pixels))
    return out


def standardize_pixels(pixels: np.ndarray, scale: float, shift: float) -> np.ndarray:
    """8-bit pixels as float32 ``p * scale + shift``, the multiply and the add each rounded to
    float32 (as ``gather_pixels`` computes them): ``scale = 1 / (255 * std)`` and ``shift =
    -mean / std`` standardize pixels of [0, 255] with the mean and std of their [0, 1] values."""
    out = np.asarray(pixels).astype(np.float32)
    out *= np.float32(scale)
    out += np.float32(shift)
    return out


def gather_pixels_numpy(pixels: np.ndarray, indices: Any, scale: float, shift: float,
                        threads: int = 1) -> np.ndarray:
    """The NumPy reference of ``gather_pixels`` (``threads`` unused)."""
    return standardize_pixels(pixels[np.asarray(indices)], scale, shift)


# --------------------------------------------------------------------------------------------
# The loader


class DataLoader:
    """Iterate over ``(images, labels)`` in mini-batches, one epoch per ``for`` loop.

    Shuffling is reproducible and changes every epoch: the loader counts the epochs it has
    started, and epoch ``e`` visits the samples in the order
    ``np.random.default_rng(seed + e).permutation(N)``. Two loaders built with the same seed
    therefore yield the same sequence of epochs. ``set_epoch`` jumps to a given epoch.

    Each batch is a copy, so changing it in place never changes the dataset.

    Args:
        images: Array whose first axis is the sample axis, e.g. ``(N, 784)``.
        labels: Array of ``N`` labels.
        batch_size: Samples per batch; the last batch may be smaller unless ``drop_last``.
        shuffle: Visit samples in a new random order each epoch; if false, in order.
        seed: Seed of epoch 0's shuffle.
        drop_last: Skip a final batch smaller than ``batch_size``.
        pixels: Optional ``(uint8 array, scale, shift)`` the images were made from, as
            ``standardize_pixels(array, scale, shift)`` (what ``Data.loader`` passes):
            each batch is then gathered from the bytes and standardized on the way, the same
            numbers read from a quarter of the memory (``gather_pixels``).

    Example:
        >>> loader = DataLoader(images, labels, batch_size=128)
        >>> for epoch in range(3):
        ...     for x, y in loader:
        ...         ...
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 pixels: tuple[np.ndarray, float, float] | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(
                f"images and labels must have the same length, got {len(images)} images and "
                f"{len(labels)} labels"
            )
        if pixels is not None:
            array = pixels[0]
            if not (isinstance(array, np.ndarray) and array.dtype == np.uint8
                    and array.shape == np.shape(images)):
                raise ValueError(
                    f"pixels must be (a uint8 array of the images' shape {np.shape(images)}, "
                    f"scale, shift), got an array of "
                    f"{getattr(array, 'dtype', type(array).__name__)} and shape "
                    f"{getattr(array, 'shape', None)}: pass Data.loader's, or leave it out")
        self.pixels = pixels
        self.images = images
        self.labels = labels
        self.batch_size = positive_int("batch_size", batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next ``for`` loop run epoch ``epoch`` (its shuffle order, then count on)."""
        self.epoch = epoch

    def __len__(self) -> int:
        if self.drop_last:
            return len(self.images) // self.batch_size
        return math.ceil(len(self.images) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        count = len(self.images)
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(count)
        else:
            order = np.arange(count)
        self.epoch += 1
        return self._batches_in(order)

    def _batches_in(self, order: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        gather = self._gather()
        for batch in range(len(self)):
            indices = order[batch * self.batch_size:(batch + 1) * self.batch_size]
            yield gather(self.images, indices), self.labels[indices]

    def _gather(self):
        """How a batch of images is copied: in C on the backend's threads (``gather_rows``:
        more cache misses in flight) where the fused kernels run, else by NumPy's indexing;
        from the pixels, standardized on the way, where the loader has them."""
        images, fast = self.images, backends.uses_fused()
        threads = backends.kernel_threads() if fast else 1
        if self.pixels is not None:
            array, scale, shift = self.pixels
            gather = gather_pixels if fast and array.flags.c_contiguous \
                else gather_pixels_numpy
            return lambda _, indices: gather(array, indices, scale, shift, threads)
        if fast and isinstance(images, np.ndarray) \
                and images.flags.c_contiguous and images.dtype.kind in "biuf":
            return lambda array, indices: gather_rows(array, indices, threads)
        return gather_rows_numpy
