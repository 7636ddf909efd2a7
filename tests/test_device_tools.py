"""tools/device: what a lent GPU's one call carries must fit in what travels (64 MiB)."""

import importlib.util
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimcodec.zoo import DEFAULT_MODEL, load_model

REPO = Path(__file__).resolve().parents[1]


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / "device" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pack():
    return _tool("pack")


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists()
                    or subprocess.run(["git", "-C", str(REPO), "rev-parse"],
                                      capture_output=True).returncode != 0,
                    reason="needs the git checkout (the travelling tree is its files)")
def test_the_device_call_leaves_room_for_the_photos(tmp_path):
    """The checkout without its shipped weights, the default model rounded to float16 (the
    run's init) and the compressai wheel must leave pack.py's minimum for the photos: a
    new shipped model, or a tracked file that grows, must not crowd out the training data,
    and the shipped weights (more than 64 MiB) must not be counted as travelling."""
    pack = _pack()
    init = tmp_path / "init.pt"
    pack.write_init(DEFAULT_MODEL, init)
    rounded, default = load_model(init), load_model(DEFAULT_MODEL)
    for (name, p), q in zip(rounded.named_parameters(), default.parameters(), strict=True):
        assert torch.equal(p, q.half().float()), name  # exactly the rounding, nothing else
    wheel = 2**20  # the wheels (compressai 1.2.8, pytorch-msssim 1.0.0) are 0.48 MB
    fixed = pack.tracked_bytes(REPO) + init.stat().st_size + wheel
    assert pack.LIMIT - pack.MARGIN - fixed >= pack.MIN_DATA, (
        f"{fixed / 2**20:.1f} MiB travel before the photos")


def test_the_device_run_imports_what_it_needs_without_the_install(tmp_path):
    """A lent machine has no `pip install -e .`: train.sh's set-up must make everything the
    run imports loadable from the checkout itself (a first GPU call once lost its minute's
    trial to `slimcodec_edge`, export/'s installed name, being missing). Python is run with
    -S here, so that the editable install's finder is not loaded: only PYTHONPATH counts."""
    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n')
    (bare / "python3").chmod(0o755)
    packages = ":".join(site.getsitepackages())  # torch, compressai: what the machine has
    env = {"PATH": f"{bare}:/usr/bin:/bin", "PYTHONPATH": packages,
           "PKGS": str(tmp_path / "pkgs"), "HOME": str(tmp_path)}
    missing = subprocess.run([sys.executable, "-S", "-c", "import slimcodec_edge"], cwd=tmp_path,
                             env=env, capture_output=True)
    assert missing.returncode != 0, "the install is visible: the check below would prove nothing"
    done = subprocess.run(["bash", "tools/device/train.sh", "check"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ready")


def test_a_oneshot_never_resumes_or_returns_an_earlier_call_s_run(tmp_path):
    """A warm machine keeps /tmp between calls: an earlier call's run there was resumed
    against the new options (refused), and its model file sent back as this call's (seen
    in a CPU rehearsal). oneshot first moves it aside, whole, and says where."""
    old = tmp_path / "model"
    old.mkdir()
    (old / "model.pt").write_bytes(b"an earlier call's model")
    said = []
    for _ in range(2):  # (the second time: nothing to move, and nothing fails)
        done = subprocess.run(["bash", "tools/device/train.sh", "fresh"], cwd=REPO,
                              env={"PATH": "/usr/bin:/bin", "RUN": str(tmp_path)},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        said.append(done.stdout)
    assert not old.exists()
    [aside] = tmp_path.glob("model-before-*")
    assert (aside / "model.pt").read_bytes() == b"an earlier call's model"
    assert f"INIT={aside}/model.pt" in said[0] and said[1] == ""


def test_the_run_compiles_its_step_only_when_that_buys_steps_in_its_time():
    """The trial's compiled step counts its compilation against the run's time."""
    plan = _tool("plan_run").plan
    trial = {"device": {"steps_per_s": 6.0, "first_step_s": 2.0},
             "device-compiled": {"steps_per_s": 12.0, "first_step_s": 120.0}}
    assert plan(trial, "device", 400) == (int(0.9 * 12 * 280), True)
    assert plan(trial, "device", 200) == (int(0.9 * 6 * 200), False)  # 960 < 1200
    bf16 = {**trial, "device-bf16": {"steps_per_s": 7.0, "first_step_s": 2.0}}
    assert plan(bf16, "device-bf16", 400) == (int(0.9 * 7 * 400), False)  # not tried compiled
    no_compiler = {"device": trial["device"]}  # (the trial's compiled step failed)
    assert plan(no_compiler, "device", 400) == (int(0.9 * 6 * 400), False)
