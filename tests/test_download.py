"""Official weights pull and weights import, end to end against a local HTTP server on 127.0.0.1."""
from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading

import numpy as np
import pytest
import torch

from stream import download, weights
from stream.engine import Engine
from stream.model import Generator


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/srv`` on 127.0.0.1; yields (folder, base URL)."""
    root = tmp_path / "srv"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}/weights"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("ANIMESTREAM_HOME", str(h))
    return h


@pytest.fixture(scope="module")
def official_file(tmp_path_factory):
    """A file in the official format: a plain state_dict of the full generator."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("official") / "paprika.pt"
    torch.save(Generator().state_dict(), path)
    return path


def _publish(server, official_file) -> str:
    root, url = server
    (root / "weights").mkdir(exist_ok=True)
    shutil.copy(official_file, root / "weights" / "paprika.pt")
    return url


def _leftovers(home):
    styles = home / "styles"
    return sorted(p.name for p in styles.iterdir()) if styles.exists() else []


@pytest.mark.skipif(not shutil.which("git"), reason="needs git")
def test_git_blob_id_is_what_git_computes(official_file):
    expected = subprocess.run(["git", "hash-object", str(official_file)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert download.git_blob_id(official_file) == expected


def test_pull_verifies_converts_and_registers(server, official_file, home, monkeypatch, cli):
    url = _publish(server, official_file)
    monkeypatch.setenv("ANIMESTREAM_WEIGHTS_URL", url)
    monkeypatch.setitem(download.OFFICIAL_BLOBS, "paprika", download.git_blob_id(official_file))
    rc, _, err = cli("weights", "pull", "paprika")
    assert rc == 0, err
    assert _leftovers(home) == ["official-paprika.json", "official-paprika.safetensors"]  # loads on any torch
    style = weights.find_style("official-paprika")
    assert style.origin == "official"
    assert style.meta["source"] == f"{url}/paprika.pt"
    assert style.meta["git_blob"] == download.OFFICIAL_BLOBS["paprika"]
    assert "non-commercial" in style.meta["license"]
    # The pulled style computes what the original state_dict computes.
    eager = Generator().eval()
    eager.load_state_dict(torch.load(official_file, weights_only=True))
    frame = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    with torch.inference_mode():
        expected = eager(torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 127.5 - 1)
    got = Engine("official-paprika", max_side=0, precision="fp32", device="cpu")(frame)
    want = ((expected[0].permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).round().byte().numpy()
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    rc, out, _ = cli("weights", "list")
    assert "official-paprika" in out and "official" in out


def test_checksum_mismatch_is_refused_and_nothing_kept(server, official_file, home, monkeypatch, cli):
    monkeypatch.setenv("ANIMESTREAM_WEIGHTS_URL", _publish(server, official_file))
    rc, _, err = cli("weights", "pull", "paprika")  # the real id cannot match this random file
    assert rc == 1
    assert err.count("\n") == 1 and "checksum mismatch" in err and "nothing was kept" in err
    assert _leftovers(home) == []


def test_missing_file_on_the_server(server, home, monkeypatch, cli):
    monkeypatch.setenv("ANIMESTREAM_WEIGHTS_URL", server[1])
    rc, _, err = cli("weights", "pull", "celeba_distill")
    assert rc == 1 and "404" in err and err.count("\n") == 1
    assert _leftovers(home) == []


def test_offline_is_a_clear_message(home, monkeypatch, cli):
    monkeypatch.setenv("ANIMESTREAM_WEIGHTS_URL", "http://127.0.0.1:9/weights/")  # discard port: refused
    rc, _, err = cli("weights", "pull", "paprika")
    assert rc == 1 and "cannot download" in err and "offline" in err and err.count("\n") == 1
    assert _leftovers(home) == []


def test_unknown_official_name_is_a_usage_error(cli):
    with pytest.raises(SystemExit) as e:
        cli("weights", "pull", "nope")
    assert e.value.code == 2


def test_import_state_dict_and_torchscript(official_file, tiny_torchscript, home, cli):
    rc, _, err = cli("weights", "import", official_file, "--name", "mine")
    assert rc == 0, err
    rc, _, err = cli("weights", "import", tiny_torchscript, "--name", "tiny-style", "--license", "CC0")
    assert rc == 0, err
    assert weights.find_style("tiny-style").meta["license"] == "CC0"
    assert weights.find_style("mine").origin == "imported"
    # Our generators are kept as safetensors whatever they came as, so they load on any torch.
    assert {weights.find_style(n).format for n in ("mine", "tiny-style")} == {"safetensors"}
    frame = np.zeros((40, 40, 3), np.uint8)
    assert Engine("mine", max_side=32, precision="fp32", device="cpu")(frame).shape == (40, 40, 3)


def test_import_refuses_bad_files_and_names(tmp_path, official_file, home, cli):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00not weights" * 100)
    rc, _, err = cli("weights", "import", junk, "--name", "junk")
    assert rc == 1 and str(junk) in err and err.count("\n") == 1
    rc, _, err = cli("weights", "import", official_file, "--name", "Bad Name!")
    assert rc == 1 and "style name" in err
    assert _leftovers(home) == []
