"""Measured defaults: the tuning file ``python -m krypton.autotune`` writes and the kernels read.

The block sizes and micro-tile of ``packed`` and ``parallel`` default to formulas over the cache
sizes (``krypton.kernels.default_knobs``). When the autotuner (``krypton.autotune``, the search)
has measured better values on this machine, they are saved here and become the defaults.

The file is ``$KRYPTON_CONFIG``, or ``~/.config/krypton/tuning.json`` (``$XDG_CONFIG_HOME``
respected). It maps a machine key (CPU, ISA and compiler: tuning is valid for nothing else) to
``{"knobs": {"mr", "nr", "mc", "kc", "nc"}, "gflops_geomean": score}``. It is read once per
process and path, and again only after ``save_tuned``, ``reset`` or ``forget`` (so a timed
loop never touches the disk), and written atomically. An entry is validated on load as the
kernels validate knobs: an entry the kernels would refuse is ignored with a warning, so it
can never break a plain ``krypton.matmul``.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

from krypton import machine, seam
from krypton.checks import finite_float
from krypton.files import atomic_write

KNOB_NAMES = ("mr", "nr", "mc", "kc", "nc")
"""What a tuning holds: the micro-tile (mr x nr) and the block sizes (mc, kc, nc)."""

_read: dict[Path, dict[str, Any]] = {}  # path -> the file's contents, as read this process
_lock = threading.Lock()


def tuning_path() -> Path:
    """Where tuned knobs are saved: ``$KRYPTON_CONFIG`` or ``~/.config/krypton/tuning.json``."""
    override = os.environ.get("KRYPTON_CONFIG")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "krypton" / "tuning.json"


def machine_key(isa: str) -> str:
    """Tuning is valid only for the machine, ISA and compiler it was measured with."""
    return f"{machine.cpu_model()} | {isa} | {seam.compiler_version()}"


def _entries(path: Path) -> dict[str, Any]:
    with _lock:
        if path not in _read:
            _read[path] = _read_file(path)
        return _read[path]


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        return data
    except (OSError, ValueError) as error:
        warnings.warn(f"ignoring unreadable tuning file {path} ({error}); "
                      "run `python -m krypton.autotune` to rebuild it", stacklevel=4)
        return {}


def forget() -> None:
    """Read the tuning file again at the next ``load_tuned`` (after someone else wrote it)."""
    with _lock:
        _read.clear()


def load_tuned(isa: str) -> dict[str, int] | None:
    """The saved knobs (mr, nr, mc, kc, nc) for this machine and ``isa``, if any and valid."""
    path = tuning_path()
    entry = _entries(path).get(machine_key(isa))
    if entry is None:
        return None
    problem = _problem(entry, isa)
    if problem:
        warnings.warn(f"ignoring the tuning for {machine_key(isa)!r} in {path}: {problem}; run "
                      "`python -m krypton.autotune` to measure it again, or `python -m "
                      "krypton.autotune --reset` to forget it", stacklevel=2)
        return None
    return {name: entry["knobs"][name] for name in KNOB_NAMES}


def _problem(entry: Any, isa: str) -> str | None:
    """What makes a saved entry unusable for the kernels, or None if nothing does."""
    knobs = entry.get("knobs") if isinstance(entry, dict) else None
    if not isinstance(knobs, dict):
        return "the entry has no 'knobs' object"
    for name in KNOB_NAMES:
        value = knobs.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"{name} must be a positive integer, got {value!r}"
    mr, nr = knobs["mr"], knobs["nr"]
    width = machine.VECTOR_WIDTH[isa]
    if nr % width:
        return f"nr must be a multiple of the {isa} vector width {width}, got nr={nr}"
    vectors = nr // width
    needed = mr * vectors + vectors + 1  # accumulators, B vectors, one broadcast of A
    if needed > machine.VECTOR_REGISTERS[isa]:
        return (f"an mr x nr = {mr} x {nr} micro-tile needs {needed} vector registers, but "
                f"{isa} has {machine.VECTOR_REGISTERS[isa]}")
    return None


def save_tuned(isa: str, knobs: dict[str, int], score: float) -> Path:
    """Save ``knobs`` as this machine's defaults for ``isa`` (atomically); return the path."""
    score = finite_float("score", score, low=0.0)  # NaN is not JSON: refuse, do not save
    entry = {"knobs": {name: knobs[name] for name in KNOB_NAMES},
             "gflops_geomean": round(score, 2)}
    problem = _problem(entry, isa)
    if problem:
        raise ValueError(f"refusing to save a tuning the kernels could not use: {problem}")
    path = tuning_path()
    data = dict(_entries(path))
    data[machine_key(isa)] = entry
    _write(path, data)
    return path


def reset(isa: str | None = None) -> None:
    """Forget the saved tuning for this machine (one ISA, or all of them)."""
    path = tuning_path()
    if not path.exists():
        return
    ours = {machine_key(isa)} if isa else {k for k in _entries(path)
                                            if k.startswith(machine.cpu_model() + " |")}
    _write(path, {k: v for k, v in _entries(path).items() if k not in ours})


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=2, allow_nan=False)
    with atomic_write(path, "w") as file:
        file.write(text)
    with _lock:
        _read[path] = data
