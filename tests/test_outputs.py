"""Outputs never replace what they must not (issue 32): links, devices, FIFOs, inputs, and
what a killed writer leaves behind. Every special file is made inside a temporary folder,
never the machine's own /dev nodes, which a failing test would replace."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from helpers import natural_like
from PIL import Image

from slimcodec.cli import main
from slimcodec.utils.io import atomic_write, atomic_write_bytes, check_writable


def test_a_symlink_is_followed_and_kept(tmp_path):
    target = tmp_path / "real.txt"
    target.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b"new"
    # a dangling link: its target is created
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "made.txt")
    atomic_write_bytes(dangling, b"made")
    assert dangling.is_symlink() and (tmp_path / "made.txt").read_bytes() == b"made"


def test_a_fifo_is_written_in_place(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic_write_bytes(fifo, b"through the pipe")
    reader.join(10)
    assert received == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_device_node_is_written_in_place_never_replaced(tmp_path):
    null = tmp_path / "null"
    try:
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    check_writable(null)
    atomic_write_bytes(null, b"discarded")
    assert stat.S_ISCHR(os.lstat(null).st_mode)
    assert os.listdir(tmp_path) == ["null"]


def test_a_directory_is_refused_and_a_failed_write_leaves_nothing(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(IsADirectoryError):
        atomic_write_bytes(tmp_path / "folder", b"x")
    (tmp_path / "kept.txt").write_bytes(b"kept")

    def failing(f):
        f.write(b"half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "kept.txt", failing)
    assert (tmp_path / "kept.txt").read_bytes() == b"kept"
    assert sorted(os.listdir(tmp_path)) == ["folder", "kept.txt"]


def test_a_writer_killed_mid_write_leaves_no_temporary_file(tmp_path):
    """SIGKILL cannot be caught: the file being written has no name until it is complete."""
    script = textwrap.dedent(f"""
        import sys, time
        from slimcodec.utils.io import atomic_write
        def slow(f):
            f.write(b"partial")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
        atomic_write({str(tmp_path / "out.bin")!r}, slow)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing"
    child.kill()
    child.wait()
    assert os.listdir(tmp_path) == []


def test_sigterm_ends_the_command_line_cleanly(tmp_path):
    image = tmp_path / "in.png"
    Image.fromarray(natural_like(64, 64)).save(image)
    script = textwrap.dedent(f"""
        import sys, time
        import slimcodec.cli as cli
        def slow(args):
            print("running", flush=True)
            time.sleep(60)
            return 0
        parser = cli.light_parser
        def build():
            p = parser()
            for action in p._subparsers._group_actions[0].choices.values():
                action.set_defaults(func=slow)
            return p
        cli.light_parser = build
        sys.exit(cli.main(["info", {str(image)!r}]))
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "running"
    time.sleep(0.2)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 128 + signal.SIGTERM and "terminated" in err


def test_eval_refuses_to_write_its_report_over_an_input_image(tmp_path, capsys):
    image = tmp_path / "photo.png"
    Image.fromarray(natural_like(32, 32)).save(image)
    before = image.read_bytes()
    assert main(["eval", str(image), "--json", str(image), "--quiet"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert image.read_bytes() == before
    assert main(["eval", str(tmp_path), "--json", str(image), "--quiet"]) == 2
    assert image.read_bytes() == before
