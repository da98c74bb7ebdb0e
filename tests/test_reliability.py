"""Datasets: a wrong path is named for what it is, and a download cut short by Ctrl-C or a full
disk leaves nothing that looks like a dataset. (Checkpoints, the kernel cache and optimizer
parameters have their own files: test_checkpoints.py, test_kernel_cache.py,
test_optim_params.py.)

Downloads that are interrupted run in a subprocess that serves itself over HTTP.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from krypton import data
from ctrl_c import sigint_default

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("KRYPTON_DATA", raising=False)
    return tmp_path


def test_a_root_that_is_a_file_is_called_a_file(no_data_anywhere):
    archive = no_data_anywhere / "train-images-idx3-ubyte.gz"
    archive.write_bytes(b"\x1f\x8b not really")
    with pytest.raises(NotADirectoryError, match=rf"root=.*{archive.name}' is a file, not a "
                                                 rf"directory.*root='{no_data_anywhere}'"):
        data.load_mnist(root=archive, download=False)
    with pytest.raises(NotADirectoryError, match="is a file"):
        data.load_mnist(root=archive, download=True)   # refused before any download


def test_krypton_data_pointing_at_a_file_is_described_as_a_file(no_data_anywhere, monkeypatch):
    a_file = no_data_anywhere / "notes.txt"
    a_file.write_text("hello")
    monkeypatch.setenv("KRYPTON_DATA", str(a_file))
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_mnist(download=False)
    assert f"{a_file} ($KRYPTON_DATA): is a file, not a directory" in str(info.value)


SERVING_CHILD = """
    import http.server, os, sys, threading, time
    from krypton import data

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(200 * 10_000))
            self.end_headers()
            for _ in range(200):
                self.wfile.write(bytes(10_000))
                self.wfile.flush()
                time.sleep(float(os.environ["CHUNK_DELAY"]))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    os.environ["KRYPTON_MNIST_MIRRORS"] = f"http://127.0.0.1:{server.server_address[1]}/"
    if os.environ.get("FILE_SIZE_LIMIT"):
        import resource
        limit = int(os.environ["FILE_SIZE_LIMIT"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        data.load_mnist("test", root=sys.argv[1])
    except data.DatasetNotFoundError as error:
        print("DatasetNotFoundError:", error)
"""


def serving_child(root: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(SERVING_CHILD), str(root)],
                            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)


def test_ctrl_c_during_a_download_leaves_no_file(no_data_anywhere):
    root = no_data_anywhere / "datasets"
    child = serving_child(root, CHUNK_DELAY="0.05")
    deadline = time.monotonic() + 60
    while not (root.is_dir() and list(root.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert root.is_dir() and list(root.iterdir()), "the download never started"
    time.sleep(0.5)   # some bytes are in the temporary file now
    child.send_signal(signal.SIGINT)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode != 0 and "KeyboardInterrupt" in stderr, stderr
    assert list(root.iterdir()) == [], "an interrupted download left a file"


def test_a_full_disk_during_a_download_is_reported_and_leaves_no_file(no_data_anywhere):
    root = no_data_anywhere / "datasets"
    child = serving_child(root, CHUNK_DELAY="0", FILE_SIZE_LIMIT="50000")
    stdout, stderr = child.communicate(timeout=120)
    assert child.returncode == 0, stderr
    assert "DatasetNotFoundError" in stdout and "File too large" in stdout, stdout
    assert list(root.iterdir()) == [], "a failed download left a file"
