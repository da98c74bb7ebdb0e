"""The autotuner: it searches, saves per machine, and its result becomes the default."""

from __future__ import annotations

import json

import numpy as np
import pytest

import krypton
from krypton import autotune, files, machine, tuning
from krypton.kernels import DEFAULT_MICROTILE, default_knobs, forget_defaults


@pytest.fixture
def tuning_file(tmp_path, monkeypatch):
    path = tmp_path / "tuning.json"
    monkeypatch.setenv("KRYPTON_CONFIG", str(path))
    forget_defaults()
    yield path
    forget_defaults()


def small_search(**overrides):
    isa = machine.native_isa()
    options = dict(isa=isa, shapes=[(48, 40, 64)], repeats=1,
                   microtiles=autotune.MICROTILES[isa][:2], kc_choices=(32, 64),
                   mc_choices=(autotune.MICROTILES[isa][1][0] * 4,), nc_choices=(128,),
                   progress=False)
    options.update(overrides)
    return autotune.autotune(**options)


def test_search_keeps_the_best_it_measured_and_saves_it(tuning_file):
    result = small_search()
    assert result["score"] == max(step["gflops"] for step in result["steps"])
    assert result["score"] >= result["baseline"]
    saved = json.loads(tuning_file.read_text())
    assert saved[autotune.machine_key(result["isa"])]["knobs"] == result["knobs"]
    assert autotune.load_tuned(result["isa"]) == result["knobs"]


def test_saved_tuning_becomes_the_default_and_stays_correct(tuning_file):
    isa = machine.native_isa()
    mr, nr = autotune.MICROTILES[isa][1]
    tuned = {"mr": mr, "nr": nr, "mc": 5 * mr, "kc": 40, "nc": 3 * nr}
    autotune.save_tuned(isa, tuned, 1.0)
    forget_defaults()
    knobs = default_knobs("parallel")
    assert {k: knobs[k] for k in tuned} == tuned
    assert krypton.get_kernel("packed").code_knobs["mr"] == mr
    rng = np.random.default_rng(0)
    a = rng.uniform(-1, 1, (131, 97)).astype(np.float32)
    b = rng.uniform(-1, 1, (97, 203)).astype(np.float32)
    np.testing.assert_allclose(krypton.matmul(a, b), a.astype(np.float64) @ b, atol=1e-4)
    assert default_knobs("packed", tuned=False)["mr"] == DEFAULT_MICROTILE[isa][0]


def test_a_corrupt_tuning_file_is_ignored_with_a_warning(tuning_file):
    tuning_file.write_text("{not json")
    with pytest.warns(UserWarning, match="ignoring unreadable tuning file"):
        assert autotune.load_tuned(machine.native_isa()) is None


def test_tuning_from_another_machine_or_with_bad_values_is_not_used(tuning_file):
    isa = machine.native_isa()
    tuning_file.write_text(json.dumps({
        "Some Other CPU | avx512 | gcc 1.0": {"knobs": {"mr": 4, "nr": 16, "mc": 8, "kc": 8, "nc": 16}},
        autotune.machine_key(isa): {"knobs": {"mr": 4, "nr": 3, "mc": -1, "kc": 8, "nc": 16}},
    }))
    with pytest.warns(UserWarning, match="mc must be a positive integer, got -1"):
        assert autotune.load_tuned(isa) is None


def test_cli_show_and_reset(tuning_file, capsys):
    isa = machine.native_isa()
    autotune.save_tuned(isa, dict(zip(("mr", "nr", "mc", "kc", "nc"),
                                      (*DEFAULT_MICROTILE[isa], 48, 64, 256))), 1.0)
    assert autotune.main(["--show"]) == 0
    assert "'kc': 64" in capsys.readouterr().out
    assert autotune.main(["--reset"]) == 0
    assert autotune.load_tuned(isa) is None


def test_a_tuning_entry_the_kernels_would_refuse_is_ignored_and_matmul_keeps_working(tuning_file):
    isa = machine.native_isa()
    too_many_rows = machine.VECTOR_REGISTERS[isa]  # mr x one vector: mr + 2 registers, too many
    tuning_file.write_text(json.dumps({autotune.machine_key(isa): {"knobs": {
        "mr": too_many_rows, "nr": machine.VECTOR_WIDTH[isa], "mc": 64, "kc": 64, "nc": 64}}}))
    with pytest.warns(UserWarning, match="vector registers"):
        assert autotune.load_tuned(isa) is None
    a = np.ones((5, 7), dtype=np.float32)
    with pytest.warns(UserWarning):
        np.testing.assert_allclose(krypton.matmul(a, a.T), 7 * np.ones((5, 5)))


def test_the_tuning_file_is_read_once_and_again_only_after_a_save(tuning_file, monkeypatch):
    reads = []
    real_read = tuning._read_file
    monkeypatch.setattr(tuning, "_read_file", lambda path: reads.append(path) or real_read(path))
    a = np.ones((9, 9), dtype=np.float32)
    for _ in range(5):
        krypton.matmul(a, a, kernel="packed", kc=16)  # knobs: the defaults are resolved each call
    assert len(reads) == 1
    isa = machine.native_isa()
    mr, nr = DEFAULT_MICROTILE[isa]
    autotune.save_tuned(isa, {"mr": mr, "nr": nr, "mc": 4 * mr, "kc": 32, "nc": 2 * nr}, 1.0)
    assert autotune.load_tuned(isa)["kc"] == 32 and len(reads) == 1  # the save updated it
    tuning_file.write_text("{}")  # written behind its back: not seen until forgotten
    assert autotune.load_tuned(isa)["kc"] == 32
    forget_defaults()
    assert autotune.load_tuned(isa) is None and len(reads) == 2


def test_a_score_that_is_not_a_number_is_never_saved(tuning_file):
    isa = machine.native_isa()
    knobs = dict(zip(("mr", "nr", "mc", "kc", "nc"), (*DEFAULT_MICROTILE[isa], 48, 64, 256)))
    with pytest.raises(ValueError, match="score must be a finite number"):
        autotune.save_tuned(isa, knobs, float("nan"))
    assert not tuning_file.exists()


def test_repeats_must_be_positive_before_any_measuring(tuning_file, capsys):
    with pytest.raises(SystemExit) as exit_info:
        autotune.main(["--repeats", "0"])
    assert exit_info.value.code == 2
    assert "--repeats must be a positive integer, got 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        small_search(repeats=0)
    assert not tuning_file.exists()


def test_an_interrupted_save_leaves_the_old_tuning_intact(tuning_file, monkeypatch):
    isa = machine.native_isa()
    knobs = dict(zip(("mr", "nr", "mc", "kc", "nc"), (*DEFAULT_MICROTILE[isa], 48, 64, 256)))
    autotune.save_tuned(isa, knobs, 1.0)
    before = tuning_file.read_text()

    def interrupted_fsync(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        autotune.save_tuned(isa, dict(knobs, kc=128), 2.0)
    assert tuning_file.read_text() == before
    assert [p.name for p in tuning_file.parent.iterdir()] == [tuning_file.name]
