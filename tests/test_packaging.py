"""What the distributions install: the full package's package list, and the edge runtime
built alone (edge/), without torch and without weights, working from its own files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers import natural_like, sliced_slimcae
from PIL import Image
from slimcodec_edge.onnx_export import export_bundle

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


def test_pyproject_lists_every_package_folder():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {"slimcodec": "slimcodec", **{v: k for k, v in config["package-dir"].items()}}
    found = set()
    for folder, name in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join((name, *parts)))
    assert found == set(config["packages"])
    assert config["package-dir"] == {"slimcodec_edge": "export"}


# Imports the edge environment does not have: a device with onnxruntime, numpy and Pillow.
_BLOCK = """
import sys
HEAVY = {"torch", "torchvision", "compressai", "tqdm", "fvcore", "onnx", "scipy",
         "pytorch_msssim", "matplotlib"}
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError(f"{name} is not installed on this device")
sys.meta_path.insert(0, Absent())
"""


@pytest.fixture(scope="module")
def edge_wheel(tmp_path_factory):
    """The slimcodec-edge wheel, built from a copy of edge/ with this checkout's sources."""
    work = tmp_path_factory.mktemp("edge")
    shutil.copytree(ROOT / "edge", work / "edge",
                    ignore=shutil.ignore_patterns("_stage", "build", "*.egg-info"))
    env = {"SLIMCODEC_SOURCE": str(ROOT), "PATH": "/usr/bin:/bin",
           "HOME": str(work)}
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--disable-pip-version-check", "-q",
                            "-w", str(work / "dist"), str(work / "edge")],
                           capture_output=True, text=True, env=env, timeout=600)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (work / "dist").glob("slimcodec_edge-*.whl")
    return wheel


def test_edge_wheel_has_no_torch_and_no_weights(edge_wheel):
    names = zipfile.ZipFile(edge_wheel).namelist()
    assert not [n for n in names if n.endswith((".pt", ".pth", ".onnx"))]
    assert not [n for n in names if "torch" in n.lower() or "/training/" in n]
    # The exporter and profiler (torch, fvcore, onnx) stay out; the runtime is in.
    assert "slimcodec_edge/edge/runtime.py" in names
    assert not {"slimcodec_edge/onnx_export.py", "slimcodec_edge/profile.py",
                "slimcodec_edge/quantize.py", "slimcodec/codec.py"} & set(names)
    assert not [n for n in names if n.startswith("export/")]  # no top-level `export`
    meta = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(edge_wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist")]
    assert requires and not [r for r in requires if "torch" in r]


def test_edge_wheel_runs_from_its_own_files(edge_wheel, tmp_path):
    """Every console script of the wheel, run from the unpacked wheel alone, torch and the
    other heavy packages absent; every slimcodec module it loads comes from the wheel."""
    site = tmp_path / "site"
    zipfile.ZipFile(edge_wheel).extractall(site)
    (entry_points,) = site.glob("*.dist-info/entry_points.txt")
    scripts = [line.split("=", 1) for line in entry_points.read_text().splitlines()
               if "=" in line]
    assert [name.strip() for name, _ in scripts] == ["slimcodec-edge"]
    model = sliced_slimcae((16, 8))
    bundle = export_bundle(model, tmp_path / "bundle", "tiny")
    Image.fromarray(natural_like(40, 52)).save(tmp_path / "in.png")
    module, func = scripts[0][1].strip().split(":")
    script = _BLOCK + f"""
sys.path.insert(0, {str(site)!r})
import importlib, json
main = getattr(importlib.import_module({module!r}), {func!r})
assert main(["encode", {str(bundle)!r}, "in.png", "-o", "x.slc", "--width", "8"]) == 0
assert main(["decode", {str(bundle)!r}, "x.slc", "-o", "out.png"]) == 0
# A file of a retired model: the edge runtime names it too (the catalog is in the wheel).
from dataclasses import replace
from slimcodec.bitstream import Bitstream, pack, unpack
b = unpack(open("x.slc", "rb").read())
retired = replace(b.header, fingerprint=bytes.fromhex("360e00cfdbddd306"))
open("y.slc", "wb").write(pack(Bitstream(retired, b.strings)))
assert main(["decode", {str(bundle)!r}, "y.slc", "-o", "y.png"]) == 2
# A warning the runtime's own code raises is one line, as in a checkout.
import warnings, slimcodec_edge.bundle
from slimcodec.utils.console import warnings_as_lines
with warnings_as_lines("slimcodec-edge"):
    warnings.warn_explicit("edge-own", UserWarning, slimcodec_edge.bundle.__file__, 1)
loaded = {{m: getattr(sys.modules[m], "__file__", None) for m in list(sys.modules)
          if m.split(".")[0] in ("slimcodec", "slimcodec_edge")}}
print(json.dumps(loaded))
"""
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    loaded = json.loads(child.stdout.strip().splitlines()[-1])
    outside = {m: f for m, f in loaded.items() if f and not f.startswith(str(site))}
    assert not outside, outside
    assert Image.open(tmp_path / "out.png").size == (52, 40)
    assert "slimcae-vr2, a research model retired" in child.stderr
    assert "slimcodec-edge: warning: edge-own\n" in child.stderr, child.stderr[-3000:]
    assert not (tmp_path / "y.png").exists()


def test_the_wheel_ships_the_default_models_weights_alone():
    """The default model's weights and its adapters', nothing else."""
    from slimcodec.zoo.catalog import DEFAULT_MODEL, SHIPPED, weights_files

    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    weights = [g for g in data["package-data"]["slimcodec.zoo"] if g.endswith(".pt")]
    assert weights == [f"weights/{f}" for f in weights_files(DEFAULT_MODEL)]
    assert weights[0] == f"weights/{SHIPPED[DEFAULT_MODEL]['weights']}"


def test_the_other_models_weights_come_from_their_distribution(tmp_path, monkeypatch):
    """An install from wheels: without its models distribution, another model is one line
    naming that distribution; with it, the weights load from its package."""
    from slimcodec.errors import ModelFileError
    from slimcodec.zoo import catalog, create_model, list_models

    shipped = catalog.WEIGHTS_DIR
    monkeypatch.setattr(catalog, "WEIGHTS_DIR", tmp_path / "none")
    for name, folder in (("slimcae", "models"), ("slimcae-hp", "models-hp")):
        dist = catalog.SHIPPED[name]["distribution"]
        with pytest.raises(ModelFileError, match=rf"weights of {name} are not installed: they "
                                                 rf"come with the {dist} distribution \(pip "
                                                 rf"install \./{folder}\)"):
            create_model(name, pretrained=True)
        assert name not in list_models(pretrained=True)
    for name in ("slimcae", "slimcae-hp"):
        entry = catalog.SHIPPED[name]
        package = tmp_path / "site" / entry["distribution"].replace("-", "_")
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text("")
        (package / entry["weights"]).symlink_to(shipped / entry["weights"])
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert catalog.weights_path("slimcae.pt") == tmp_path / "site/slimcodec_models/slimcae.pt"
    assert (catalog.weights_path("slimcae-hp.pt")
            == tmp_path / "site/slimcodec_models_hp/slimcae-hp.pt")
    assert create_model("slimcae", pretrained=True).widths[0] == 192


def test_each_models_wheel_holds_its_shipped_models(tmp_path):
    """Every models distribution builds from its folder (models-hp/setup.py is a link to
    models/setup.py) and holds the models the catalog assigns it, the default's excepted;
    together they hold every other shipped model."""
    from slimcodec.zoo.catalog import (
        DEFAULT_MODEL,
        MODELS_DISTRIBUTIONS,
        SHIPPED,
        distribution_folder,
        weights_files,
    )

    assert {e["distribution"] for n, e in SHIPPED.items()
            if n != DEFAULT_MODEL} <= set(MODELS_DISTRIBUTIONS)
    held = {}
    for dist in MODELS_DISTRIBUTIONS:
        folder = distribution_folder(dist)
        shutil.copytree(ROOT / folder, tmp_path / folder, symlinks=True,
                        ignore=shutil.ignore_patterns("_stage", "build", "*.egg-info"))
        build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                                "--no-build-isolation", "--disable-pip-version-check", "-q",
                                "-w", str(tmp_path / "dist"), str(tmp_path / folder)],
                               capture_output=True, text=True, timeout=600,
                               env={"SLIMCODEC_SOURCE": str(ROOT), "PATH": "/usr/bin:/bin",
                                    "HOME": str(tmp_path)})
        assert build.returncode == 0, build.stderr[-3000:]
        (wheel,) = (tmp_path / "dist").glob(f"{dist.replace('-', '_')}-*.whl")
        held[dist] = {n.split("/")[-1] for n in zipfile.ZipFile(wheel).namelist()
                      if n.endswith(".pt")}
        assert held[dist] == {f for n, e in SHIPPED.items() for f in weights_files(n)
                              if n != DEFAULT_MODEL and e["distribution"] == dist}, dist
    assert set().union(*held.values()) == {f for n in SHIPPED for f in weights_files(n)
                                           if n != DEFAULT_MODEL}


def test_a_models_sdist_builds_its_wheel_away_from_the_checkout(tmp_path):
    """The sdist of slimcodec-models-hp (whose setup.py is a link) carries the staged weights
    and a real setup.py, and builds the same wheel with no checkout around it."""
    from slimcodec.zoo.catalog import DEFAULT_MODEL, SHIPPED

    dist = "slimcodec-models-hp"
    shutil.copytree(ROOT / "models-hp", tmp_path / "src" / "models-hp", symlinks=True,
                    ignore=shutil.ignore_patterns("_stage", "build", "*.egg-info"))
    (tmp_path / "src" / "models").symlink_to(ROOT / "models")  # the link's target
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    sdist = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "-d", str(tmp_path)],
                           cwd=tmp_path / "src" / "models-hp", capture_output=True, text=True,
                           timeout=600, env={**env, "SLIMCODEC_SOURCE": str(ROOT)})
    assert sdist.returncode == 0, sdist.stderr[-3000:]
    (archive,) = tmp_path.glob(f"{dist.replace('-', '_')}-*.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
        setup_py = next(m for m in tar.getmembers() if m.name.endswith("/setup.py"))
        assert setup_py.isfile()  # the link became a file
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--disable-pip-version-check", "-q",
                            "-w", str(tmp_path / "dist"), str(unpacked)],
                           capture_output=True, text=True, timeout=600, env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob(f"{dist.replace('-', '_')}-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[-1] for n in names if n.endswith(".pt")} == {
        e["weights"] for n, e in SHIPPED.items()
        if n != DEFAULT_MODEL and e["distribution"] == dist}
    assert "slimcodec_models_hp/VERSION" in names
