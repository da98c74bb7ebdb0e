"""Build the whole kernel ladder, check it, and measure it: Krypton's main job.

    python build.py                 # the ladder at 1024 x 1024 x 1024
    python build.py --size 2048     # another size
    KRYPTON_QUICK=1 python build.py # a quick run (256^3), as CI does

1. compiles every rung through the cffi seam (warming the on-disk cache for the notebooks),
2. checks every rung against NumPy in float64 on awkward shapes (primes, 1, transposed),
3. measures this machine's FMA peak, on one core and on all,
4. times the ladder beside NumPy and prints the table, and saves results/ladder.png and
   results/results.json (with the machine the numbers came from).

    python build.py --notebooks     # re-execute every notebook in place (committed outputs)
    python build.py --notebooks 05  # only the notebooks whose name starts with 05
    python build.py --site [DIR]    # render the notebooks as a static web site (default site/)

Before compiling, it makes sure the training notebook has data: MNIST is downloaded (checked
against its MD5 sums) when it is neither on this machine nor Fashion-MNIST is; offline, it
says which command installs Fashion-MNIST. Missing data never fails the build.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from krypton import KERNELS, bench, data, machine, seam, site, timing
from krypton.checks import positive_int
from krypton.kernels import default_knobs, get_kernel, matmul

CHECK_SHAPES = [(1, 1, 1), (7, 5, 13), (64, 64, 64), (131, 97, 257), (256, 300, 1), (33, 1, 500)]
"""(M, N, K): a single element, primes, K = 1 and N = 1; B is handed over transposed."""


def compile_all() -> None:
    for name in tqdm(KERNELS, desc="compile", unit="kernel", file=sys.stderr):
        get_kernel(name)


def check_all() -> bool:
    """Check every rung against NumPy (``krypton.timing.check_against_numpy``); print a row each."""
    print(f"{'kernel':>9} {'shapes':>7} {'max |error|':>12} {'tolerance':>10}  result")
    ok = True
    for name in KERNELS:
        rows = timing.check_against_numpy(lambda a, b: matmul(a, b, kernel=name), CHECK_SHAPES,
                                          transposed_b=True)
        worst = max(rows, key=lambda row: row["max_error"] / row["tolerance"])
        passed = all(row["ok"] for row in rows)
        ok &= passed
        print(f"{name:>9} {len(rows):>7} {worst['max_error']:12.2e} {worst['tolerance']:10.1e}  "
              f"{'ok' if passed else 'WRONG'}")
    return ok


_PROGRESS_BAR = re.compile(r"\d+%\|.*\| *\d+/\d+ \[")


def drop_progress_bars(notebook) -> int:
    """Remove tqdm's progress-bar widgets from a notebook's saved outputs; return how many.

    A saved widget keeps only the text of its first frame ("0%| | 0/20"), which reads as a
    stalled run on a web page; the bars are useful while the notebook runs, not afterwards.
    """
    dropped = 0
    for cell in notebook.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if ("application/vnd.jupyter.widget-view+json" in data
                    and _PROGRESS_BAR.search(text)):
                dropped += 1
                continue
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    return dropped


def run_notebooks(prefixes: list[str], timeout: int = 3600) -> int:
    """Execute notebooks in place, in order, so their saved outputs are a fresh full run."""
    import nbformat
    from nbclient import NotebookClient

    folder = Path(__file__).resolve().parent / "notebooks"
    paths = [p for p in sorted(folder.glob("[0-9]*.ipynb"))
             if not prefixes or any(p.name.startswith(x) for x in prefixes)]
    if not paths:
        print(f"no notebook in notebooks/ starts with {prefixes}")
        return 1
    mode = "quick" if timing.quick_mode() else "full"
    # The notebooks' kernels import this checkout's krypton, whatever copy pip points at.
    repo = str(folder.parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [repo] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    for path in paths:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(folder)}}).execute()
        drop_progress_bars(notebook)
        nbformat.write(notebook, path)
        print(f"{path.name}: executed in {time.perf_counter() - start:.0f} s ({mode} mode)",
              flush=True)
    return 0


DATA_COMMAND = "sudo apt-get install dataset-fashion-mnist"
"""The one command that provides training data offline (Debian/Ubuntu's Fashion-MNIST)."""


def obtain_dataset() -> str | None:
    """Find MNIST or Fashion-MNIST here, else download MNIST; say what happened, never raise.

    Returns the dataset the training notebook will use, or None when there is none.
    """
    for dataset in ("mnist", "fashion-mnist"):
        found = data.find_local(dataset)
        if found is not None:
            print(f"Training data: {dataset}, found in {found.parent}")
            return dataset
    print("Training data: none on this machine; downloading MNIST (about 11 MB, MD5-checked) ...",
          flush=True)
    try:
        for split in data.SPLITS:
            data.load_mnist(split, "mnist", download=True)
    except (data.DatasetNotFoundError, OSError) as error:
        # The error lists every place looked in; the first failed download says enough here.
        attempts = [line.strip(" -") for line in str(error).splitlines() if "://" in line]
        reason = attempts[0] if attempts else str(error).splitlines()[0]
        print(f"Training data: MNIST could not be downloaded (offline? {reason}).\n"
              f"  Notebooks 09-11 and the tests that train on real data will be skipped.\n"
              f"  One command provides Fashion-MNIST offline: {DATA_COMMAND}\n"
              f"  (or run python build.py again when online)")
        return None
    print(f"Training data: MNIST downloaded into {data.find_local('mnist').parent}")
    return "mnist"


def lab_settings() -> None:
    """The sliders' JupyterLab setting (krypton.notebook.LAB_SETTINGS), for this environment."""
    from krypton.notebook import LAB_SETTINGS, write_lab_overrides
    try:
        path = write_lab_overrides()
    except OSError as error:
        print(f"JupyterLab settings: could not write them ({error}); in JupyterLab set "
              "Settings > Settings Editor > Kernel > Comms over subshells to 'disabled'")
        return
    names = ", ".join(f"{k} = {v!r}" for values in LAB_SETTINGS.values() for k, v in values.items())
    print(f"JupyterLab settings for the sliders: {names} (in {path})")


def build_site(out: Path) -> int:
    """Render every notebook with its saved outputs into a static site in ``out``."""
    try:
        pages = site.build_site(out, Path(__file__).resolve().parent / "notebooks")
    except (FileNotFoundError, ValueError) as error:
        print(error, file=sys.stderr)
        return 1
    print(f"Wrote {len(pages)} pages into {out}; open {out / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    quick = timing.quick_mode()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256 if quick else 1024,
                        help="square size of the ladder benchmark (default 1024; quick: 256)")
    parser.add_argument("--repeats", type=int, default=3 if quick else 5)
    parser.add_argument("--out", type=Path, default=Path("results"))
    parser.add_argument("--notebooks", nargs="*", metavar="PREFIX", default=None,
                        help="re-execute the notebooks in place instead (optionally only "
                             "those whose names start with a PREFIX)")
    parser.add_argument("--site", nargs="?", type=Path, const=Path("site"), default=None,
                        metavar="DIR", help="render the notebooks as a static web site into "
                                            "DIR (default site/) instead")
    args = parser.parse_args(argv)
    if args.notebooks is not None:
        return run_notebooks(args.notebooks)
    if args.site is not None:
        return build_site(args.site)
    try:
        positive_int("--size", args.size)
        positive_int("--repeats", args.repeats)
        timing.check_fits_in_memory(args.size, args.size, args.size, "--size")
        bench.check_output_dir(args.out)
    except (TypeError, ValueError) as error:
        parser.error(str(error))

    obtain_dataset()
    lab_settings()
    print(f"Machine: {machine.describe()}")
    print(f"Compiler: {seam.compiler_version()}; OpenMP: "
          f"{'yes' if seam.openmp_flags() else 'no (parallel runs on one thread)'}")
    print(f"Block sizes chosen from the caches: {default_knobs('parallel')}\n")
    start = time.perf_counter()
    compile_all()
    print(f"Compiled {len(KERNELS)} kernels in {time.perf_counter() - start:.1f} s "
          f"(cache: {seam.cache_dir()})\n")

    if not check_all():
        print("\nA kernel disagrees with NumPy: stopping before the benchmark.")
        return 1

    cores = machine.cpu_count()
    threads = sorted({1, cores})
    print("\nMeasuring the FMA peak ...", flush=True)
    measured = {t: machine.peak(t) for t in threads}
    mhz = machine.reported_mhz()
    for result in measured.values():
        print(f"FMA {result}" + (f" (/proc/cpuinfo says {mhz / 1000:.2f} GHz)" if mhz else ""))
    peak = {t: result.gflops for t, result in measured.items()}
    references = ["numpy", "torch"] if timing.torch_available() else ["numpy"]
    n = args.size
    print(f"\nThe ladder at M = N = K = {n} (median of {args.repeats} interleaved rounds):")
    measurements = bench.run(list(KERNELS) + references, [(n, n, n)], threads, args.repeats)
    print(bench.format_table(measurements, peak))
    paths = bench.save_results(measurements, peak, args.out)
    print("\nSaved " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
