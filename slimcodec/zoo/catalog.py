"""What ships, without torch: the default model, the shipped weights' fingerprints, kinds and
widths, and the retired models.

The light commands (``slimcodec info``, ``models``, ``select``, ``--help``) read this alone;
the registry (:mod:`slimcodec.zoo.registry`) builds the models. ``tests/test_codec.py``
checks that every entry matches its weights file and the model it builds.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from slimcodec.errors import RetiredModelError

__all__ = [
    "DEFAULT_MODEL",
    "MEASURED",
    "MODELS_DISTRIBUTIONS",
    "RETIRED",
    "SHIPPED",
    "WEIGHTS_DIR",
    "distribution_folder",
    "find_by_fingerprint",
    "install_hint",
    "retired_error",
    "retired_writer",
    "shipped_adapters",
    "shipped_table",
    "weights_files",
    "weights_path",
    "writer_of",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"
#: The distributions that install the other shipped models' weights, each from its folder
#: of the repository (:func:`distribution_folder`): the ``slimcodec`` wheel holds the
#: default's alone, and a model's ``distribution`` in :data:`SHIPPED` says which of these
#: holds it otherwise, so that each wheel stays under the 50 MB a package index accepts
#: (``benchmarks/wheel_size.py``). A checkout has them all in WEIGHTS_DIR.
MODELS_DISTRIBUTIONS = ("slimcodec-models", "slimcodec-models-hp", "slimcodec-models-hpc")

#: What ``slimcodec compress``, ``demo``, ``eval``, ``export``, ``profile`` and the Python
#: API use when no model is named: the best shipped model (``slimcodec models``).
DEFAULT_MODEL = "slimcae-hpc"

_WIDTHS = [192, 144, 96, 72, 48]
#: Every model that ships weights: its file, the fingerprint of those weights, its kind,
#: and the distribution that installs its weights when it is not the default (a 43 MB
#: file has one to itself); ``adapters``: the domain adapters that ship with it (each its
#: domain, file and fingerprint), which its codec loads and encodes through by default
#: (the gate ``auto``: each image's file is coded with whichever of the model alone and its
#: adapters gives the lowest RD loss; ``slimcodec.codec.Codec.load``).
SHIPPED: dict[str, dict[str, Any]] = {
    "slimcae": {"weights": "slimcae.pt", "fingerprint": "424d47da02a81639",
                "kind": "factorized prior, one rate per width", "widths": _WIDTHS,
                "distribution": "slimcodec-models"},
    "slimcae-vr5": {"weights": "slimcae-vr5.pt", "fingerprint": "a7a8c9a65dc3ad12",
                    "kind": "factorized prior, variable rate", "widths": _WIDTHS,
                    "distribution": "slimcodec-models"},
    "slimcae-hp": {"weights": "slimcae-hp.pt", "fingerprint": "f04d4bddcaaf0027",
                   "kind": "mean-scale hyperprior, variable rate", "widths": _WIDTHS,
                   "distribution": "slimcodec-models-hp"},
    "slimcae-hp2": {"weights": "slimcae-hp2.pt", "fingerprint": "de9e9b8d1c0a80e0",
                    "kind": "mean-scale hyperprior (half-width h_s), variable rate",
                    "widths": _WIDTHS, "distribution": "slimcodec-models"},
    "slimcae-hpc": {"weights": "slimcae-hpc.pt", "fingerprint": "e0ef39987ee2345b",
                    "kind": "mean-scale hyperprior, checkerboard mean context, variable rate",
                    "widths": _WIDTHS, "distribution": "slimcodec-models-hpc",
                    "adapters": [{"domain": "illustration",
                                  "weights": "slimcae-hpc.illustration.pt",
                                  "fingerprint": "2824e600420158a1"},
                                 {"domain": "screen", "weights": "slimcae-hpc.screen.pt",
                                  "fingerprint": "87660b7d9898b889"}]},
}

#: Research models retired from the package (allowed before 1.0, see
#: docs/compatibility.md): their weights' fingerprint -> (name, the last release that ships
#: them and decodes their files). A file one of them wrote is refused in one line naming both.
RETIRED: dict[str, tuple[str, str]] = {
    "c1c4f356bd4b192b": ("slimcae-vr", "0.1.0"),
    "360e00cfdbddd306": ("slimcae-vr2", "0.1.0"),
    "5807521aa731686c": ("slimcae-vr3", "0.1.0"),
    "204485622f9a947e": ("slimcae-vr4", "0.1.0"),
}
_RETIRED_NAMES = {name: release for name, release in RETIRED.values()}

#: Each shipped model's rate range on held-out photos, as benchmarks/model_table.py measured
#: it (for ``slimcodec models``).
MEASURED = WEIGHTS_DIR / "measured.json"


def distribution_folder(distribution: str) -> str:
    """The repository folder a models distribution builds from: ``slimcodec-models`` from
    ``models/``, ``slimcodec-models-X`` from ``models-X/``."""
    return "models" + distribution.removeprefix("slimcodec-models")


def install_hint(name: str) -> str:
    """How to install the shipped model ``name``'s weights where the wheel lacks them."""
    dist = SHIPPED[name]["distribution"]
    return f"the {dist} distribution (pip install ./{distribution_folder(dist)})"


def weights_path(file: str) -> Path | None:
    """Where the shipped weights file ``file`` is installed: in this package (a checkout
    holds every one; the wheel, the default's), or in a package of
    :data:`MODELS_DISTRIBUTIONS`; None if none holds it."""
    local = WEIGHTS_DIR / file
    if local.is_file():
        return local
    for distribution in MODELS_DISTRIBUTIONS:
        spec = importlib.util.find_spec(distribution.replace("-", "_"))
        for root in (spec.submodule_search_locations or []) if spec else []:
            if (Path(root) / file).is_file():
                return Path(root) / file
    return None


def shipped_adapters(name: str) -> list[dict[str, str]]:
    """The domain adapters that ship with the registered model ``name`` (none for any
    other name or a model file)."""
    entry = SHIPPED.get(name)
    return list(entry.get("adapters", [])) if entry else []


def weights_files(name: str) -> list[str]:
    """Every weights file the shipped model ``name`` installs: its own, then its adapters'."""
    return [SHIPPED[name]["weights"], *(a["weights"] for a in shipped_adapters(name))]


def find_by_fingerprint(fp: bytes) -> str | None:
    """The shipped model whose weights have this fingerprint, if any (from this table: no
    weights file is read)."""
    return next((n for n, e in SHIPPED.items() if e["fingerprint"] == fp.hex()), None)


def retired_error(name: str) -> RetiredModelError | None:
    """The error for asking for a retired model's weights (None if ``name`` is not one)."""
    release = _RETIRED_NAMES.get(name)
    return _retired(name, release, "pretrained weights of") if release else None


def retired_writer(fp: bytes) -> RetiredModelError | None:
    """The error for a file written by a retired model (None if its writer is not one)."""
    known = RETIRED.get(fp.hex())
    return _retired(*known, "file was written by") if known else None


def writer_of(fp: bytes) -> str:
    """How a mismatch error names the model that wrote a file with fingerprint ``fp``;
    raises :class:`RetiredModelError` for a retired one (its own one-line error)."""
    if (retired := retired_writer(fp)) is not None:
        raise retired
    known = find_by_fingerprint(fp)
    return f"registered model {known!r}" if known else "an unregistered model"


def _retired(name: str, release: str, what: str) -> RetiredModelError:
    return RetiredModelError(
        f"{what} {name}, a research model retired from the package: slimcodec {release} is "
        f"the last release that ships it and decodes its files (pip install "
        f"'slimcodec=={release}')")


def shipped_table() -> list[dict[str, Any]]:
    """One row per shipped model, the default first: name, kind, widths, file size (None
    where its weights are not installed), whether it is the default, the domains of its
    shipped adapters, and its measured rate
    range (``None`` where not measured for these
    weights), with the images it was measured on."""
    measured = json.loads(MEASURED.read_text()) if MEASURED.is_file() else {"models": {}}
    rows = []
    for name, entry in sorted(SHIPPED.items(), key=lambda kv: kv[0] != DEFAULT_MODEL):
        ends = measured["models"].get(name)
        if ends is not None and ends.get("fingerprint") != entry["fingerprint"]:
            ends = None  # measured on other weights
        path = weights_path(entry["weights"])
        rows.append({"name": name, "kind": entry["kind"], "widths": entry["widths"],
                     "bytes": path.stat().st_size if path else None,
                     "distribution": entry["distribution"],
                     "default": name == DEFAULT_MODEL, "measured": ends,
                     "adapters": [a["domain"] for a in shipped_adapters(name)],
                     "images": measured.get("images")})
    return rows
