"""Module.save and Module.load: nothing lost when a write fails, nothing assigned before all of
it is checked, nothing large read before the names and shapes are known to be right.

Writes that can crash or be interrupted run in a subprocess, so a crash shows as a failed test.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

import krypton
from krypton import nn
from ctrl_c import sigint_default

ROOT = Path(__file__).resolve().parent.parent


def big_model(seed: int) -> nn.Module:
    """About 800 KB of float32 parameters: larger than the file-size limit used below."""
    krypton.manual_seed(seed)
    return nn.Sequential(nn.Linear(400, 500), nn.ReLU(), nn.Linear(500, 3))


def values(model: nn.Module) -> dict[str, np.ndarray]:
    return {name: p.data.copy() for name, p in model.named_parameters()}


def assert_same(model: nn.Module, expected: dict[str, np.ndarray]) -> None:
    got = values(model)
    assert list(got) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def only_the_checkpoint_is_left(directory: Path, name: str) -> None:
    assert sorted(p.name for p in directory.iterdir()) == [name], "a temporary file was left"


def run_child(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)},
                          preexec_fn=sigint_default)


CHILD_PRELUDE = """
    import numpy as np
    import krypton
    from krypton import nn
    krypton.manual_seed(2)
    model = nn.Sequential(nn.Linear(400, 500), nn.ReLU(), nn.Linear(500, 3))
"""


def test_a_full_disk_leaves_the_previous_checkpoint_intact_and_loadable(tmp_path):
    big_model(1).save(tmp_path / "model.npz")
    size = (tmp_path / "model.npz").stat().st_size
    assert size > 400_000
    child = run_child(CHILD_PRELUDE + """
    import resource
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))   # ulimit -f 100 (KB)
    try:
        model.save("model.npz")
    except OSError as error:
        print("refused:", error)
    """, tmp_path)
    assert child.returncode == 0, child.stderr
    assert "refused:" in child.stdout
    assert (tmp_path / "model.npz").stat().st_size == size
    assert_same(big_model(5).load(tmp_path / "model.npz"), values(big_model(1)))
    only_the_checkpoint_is_left(tmp_path, "model.npz")


def test_ctrl_c_in_the_middle_of_a_save_leaves_the_previous_checkpoint(tmp_path):
    big_model(1).save(tmp_path / "model.npz")
    child = run_child(CHILD_PRELUDE + """
    import os, signal
    write_array = np.lib.format.write_array

    def interrupted_after_the_first_array(*args, **kwargs):
        write_array(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C, delivered between two arrays

    np.lib.format.write_array = interrupted_after_the_first_array
    model.save("model.npz")
    print("not interrupted")
    """, tmp_path)
    assert child.returncode != 0 and "KeyboardInterrupt" in child.stderr, child.stderr
    assert "not interrupted" not in child.stdout
    assert_same(big_model(5).load(tmp_path / "model.npz"), values(big_model(1)))
    only_the_checkpoint_is_left(tmp_path, "model.npz")


def test_an_error_during_a_save_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "model.npz"
    big_model(1).save(path)
    before = path.read_bytes()
    write_array = np.lib.format.write_array
    calls = []

    def failing_on_the_third_array(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk on fire")
        write_array(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", failing_on_the_third_array)
    with pytest.raises(RuntimeError, match="disk on fire"):
        big_model(2).save(path)
    assert path.read_bytes() == before
    only_the_checkpoint_is_left(tmp_path, "model.npz")


def test_parameters_named_like_savez_arguments_are_saved(tmp_path):
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.file = nn.Parameter(np.arange(3, dtype=np.float32))
            self.allow_pickle = nn.Parameter(np.ones((2, 2), dtype=np.float32))

    Odd().save(tmp_path / "odd.npz")
    other = Odd()
    other.file.data[...] = 0
    other.load(tmp_path / "odd.npz")
    np.testing.assert_array_equal(other.file.data, [0, 1, 2])
    with np.load(tmp_path / "odd.npz") as archive:   # still a plain .npz for NumPy
        assert sorted(archive.files) == ["allow_pickle", "file"]


def test_a_symlink_at_the_path_is_replaced_not_written_through(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"not a checkpoint")
    link = tmp_path / "model.npz"
    link.symlink_to(precious)
    big_model(1).save(link)
    assert precious.read_bytes() == b"not a checkpoint"
    assert not link.is_symlink()
    assert_same(big_model(5).load(link), values(big_model(1)))


def test_a_path_without_the_npz_suffix_is_written_as_given(tmp_path):
    big_model(1).save(tmp_path / "checkpoint")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_a_shape_mismatch_on_the_last_parameter_changes_nothing():
    model = big_model(1)
    before = values(model)
    state = big_model(2).state_dict()
    state["2.bias"] = np.zeros(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"'2.bias'.*\(3,\).*\(4,\)"):
        model.load_state_dict(state)
    assert_same(model, before)


@pytest.mark.parametrize("bad", [np.zeros(3, dtype=np.complex64), np.array(["a", "b", "c"]),
                                 np.array([None, None, None], dtype=object)])
def test_a_value_that_is_not_a_real_number_is_refused_before_anything_changes(bad):
    model = big_model(1)
    before = values(model)
    with pytest.raises(TypeError, match=r"'2.bias' holds float32"):
        model.load_state_dict(dict(big_model(2).state_dict(), **{"2.bias": bad}))
    assert_same(model, before)


def test_a_checkpoint_of_another_shape_is_refused_before_anything_changes(tmp_path):
    krypton.manual_seed(0)
    nn.Sequential(nn.Linear(400, 500), nn.ReLU(), nn.Linear(500, 4)).save(tmp_path / "m.npz")
    model = big_model(1)
    before = values(model)
    with pytest.raises(ValueError, match=r"'2.weight' has shape \(3, 500\).*\(4, 500\)"):
        model.load(tmp_path / "m.npz")
    assert_same(model, before)


def npz_with_a_huge_header(names: list[str], huge: str) -> bytes:
    """An .npz whose member ``huge`` claims 512 MB of float32 and holds none of it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            member = io.BytesIO()
            if name == huge:
                np.lib.format.write_array_header_1_0(
                    member, {"descr": "<f4", "fortran_order": False, "shape": (2**27,)})
            else:
                np.lib.format.write_array(member, np.zeros(3, dtype=np.float32))
            archive.writestr(f"{name}.npy", member.getvalue())
    return buffer.getvalue()


@pytest.mark.parametrize("names, huge, error, match", [
    (["weight", "bogus"], "bogus", KeyError, r"unexpected \['bogus'\]"),
    (["weight"], "weight", ValueError, r"'weight' has shape \(3,\).*\(134217728,\)"),
])
def test_a_tiny_file_claiming_a_huge_array_is_refused_without_allocating_it(tmp_path, names,
                                                                            huge, error, match):
    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(np.ones(3, dtype=np.float32))

    path = tmp_path / "bogus.npz"
    path.write_bytes(npz_with_a_huge_header(names, huge))
    assert path.stat().st_size < 2000
    model = One()
    tracemalloc.start()
    try:
        with pytest.raises(error, match=match):
            model.load(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, f"loading allocated {peak / 2**20:.0f} MB before refusing"
    np.testing.assert_array_equal(model.weight.data, [1, 1, 1])


def test_a_missing_key_is_refused_before_anything_changes(tmp_path):
    np.savez(tmp_path / "part.npz", **{"0.weight": np.zeros((500, 400), np.float32)})
    model = big_model(1)
    before = values(model)
    with pytest.raises(KeyError, match=r"missing \['0.bias', '2.weight', '2.bias'\]"):
        model.load(tmp_path / "part.npz")
    assert_same(model, before)


def test_a_file_that_is_not_a_checkpoint_is_named_in_the_error(tmp_path):
    (tmp_path / "notes.npz").write_text("hello")
    with pytest.raises(ValueError, match=r"notes.npz.*not a checkpoint saved by Module.save"):
        big_model(1).load(tmp_path / "notes.npz")
    with zipfile.ZipFile(tmp_path / "mixed.npz", "w") as archive:
        archive.writestr("readme.txt", "hi")
    with pytest.raises(ValueError, match=r"readme.txt"):
        big_model(1).load(tmp_path / "mixed.npz")


def test_a_model_sharing_a_layer_round_trips(tmp_path):
    layer = nn.Linear(3, 3)
    model = nn.Sequential(layer, nn.ReLU(), layer)
    assert list(model.state_dict()) == ["0.weight", "0.bias"]
    model.save(tmp_path / "shared.npz")
    copy_layer = nn.Linear(3, 3)
    copy = nn.Sequential(copy_layer, nn.ReLU(), copy_layer).load(tmp_path / "shared.npz")
    np.testing.assert_array_equal(copy[2].weight.data, layer.weight.data)


@pytest.mark.parametrize("where, match", [
    ("missing-dir/model.npz", "directory that does not exist"),
    ("", "is a directory"),
])
def test_saving_to_an_impossible_path_names_the_path(tmp_path, where, match):
    with pytest.raises(ValueError, match=match):
        big_model(1).save(tmp_path / where)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_missing_or_damaged_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*nowhere.npz"):
        big_model(1).load(tmp_path / "nowhere.npz")
    with zipfile.ZipFile(tmp_path / "damaged.npz", "w") as archive:
        archive.writestr("weight.npy", b"garbage, not an array header")

    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(np.ones(3, dtype=np.float32))

    with pytest.raises(ValueError, match=r"entry 'weight' is not a valid .npy array"):
        One().load(tmp_path / "damaged.npz")
