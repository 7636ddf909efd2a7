"""A deployment bundle: per-width ONNX graphs, entropy tables and a manifest that binds them.

Layout of a bundle folder (written by :mod:`slimcodec_edge.onnx_export`, read here without torch)::

    manifest.json            format, version, model name, architecture, fingerprint, widths,
                             rate settings, graph files with their SHA-256, int8 report,
                             the SHA-256 of entropy.npz (``tables_sha256``)
    entropy.npz              per width (and anchor): quantised CDFs, lengths, offsets, medians
    analysis-<w>.onnx        image (1, 3, H, W) [, lmbda (1,)] -> latent (1, w, H/16, W/16)
    synthesis-<w>.onnx       latent [, lmbda] -> image (1, 3, H, W), unclamped
    analysis-<w>.int8.onnx   the same, statically quantised (QDQ), with --int8; with
    synthesis-<w>.int8.onnx  --int8-only, the only analysis and synthesis graphs (the
                             manifest's ``int8.only``), and ``hyper_*-<w>.int8.onnx`` too
    analysis-<w>-d<id>.onnx  a domain adapter's graphs (``slimcodec export --adapter``): the
    synthesis-<w>-d<id>.onnx source's with the adapter's stages (and ``.int8.onnx`` ones,
                             with --int8); its entropy tables, when it has its own
                             (``extend``), under ``d<id>_`` keys
    synthesis-<w>-mix.onnx   latent, weights (K,) [, lmbda] -> image: the source's synthesis
                             with the K decoder-side adapters (``bias``, ``adapters``) mixed,
                             each stage x + sum_k weights[k] (A_k(x) - x); it decodes the
                             weighing gate's files (``slimcodec compress --domain mix``);
                             with --int8 a ``.int8.onnx`` one too (the only one with
                             --int8-only)
    weights.bin              the float graphs' large weights, stored once (a lean bundle's,
                             manifest ``shared_weights``: file, SHA-256, tensors): every
                             width's graphs read slices of it as ONNX external data
                             (:mod:`slimcodec_edge.shared_weights`)
    gate.npz                 a learned gate's arrays (``slimcodec export --gate``): w1, b1,
                             w2, b2 of :class:`slimcodec.gating.GateArrays`
    hyper_analysis-<w>.onnx  a hyperprior model's (manifest ``latent``: ``hyperprior``)
    hyper_mean-<w>.onnx      latent -> z, and z's symbols -> the means of the latent; its
                             entropy.npz entries are its latent coder's arrays
                             (:meth:`slimcodec.latent.HyperpriorCoder.arrays`: z's tables and
                             medians, the Gaussian tables, the integer scale network)
    mean_context-<w>.onnx    a checkerboard model's (``latent``: ``checkerboard``): the
                             latent with its anchors decoded -> the others' mean corrections

The latent is the model's ``analysis`` output (after the latent gain of a variable-rate
model); the runtime codes it with the latent coder the manifest's ``latent`` names
(:mod:`slimcodec.latent`; absent: ``factorized``, ``round(y - median)`` and one CDF per
channel), built from the same arrays the model's codec uses, exactly as that codec does.
The fingerprint is the model's: a bundle writes and reads the very files ``slimcodec`` does.
A bundle is confined to its folder: every file the manifest names is a plain name inside
it (no folder part, no ``..``, not absolute), and every file is checked against its SHA-256
before it is used, the tables on loading, each graph when it is first opened.
A file's domain id (0: no adapter) selects the graphs and tables it decodes with. The
manifest's optional parts (a bundle without one reads as before):

- ``domains`` maps each id to its name, adapter method and graphs, and whether the
  adapter codes the source's strings (``codes_as_source``: it changes the decoder alone
  and has no entropy tables of its own, so the gate ``auto`` codes the image once);
- ``mixture`` lists the ids the mixing graphs take weights for, in input order;
- ``gate`` names the learned gate's file, its domains (in output order after the source),
  the latent channels and model widths its features use, and a variable-rate model's λ
  bounds;
- ``default_domain`` is what ``slimcodec-edge encode`` codes with where it is told no
  ``--domain``: ``auto`` for a model exported with its shipped adapters, as
  ``slimcodec compress`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from slimcodec.bitstream import FINGERPRINT_SIZE
from slimcodec.bitstream.rate import anchor_index
from slimcodec.errors import BundleError, ModelMismatchError
from slimcodec.gating import GateArrays
from slimcodec.latent import NETWORKS, LatentCoder, Network, coder_from_arrays

__all__ = ["FORMAT", "GATE", "MANIFEST", "TABLES", "VERSION", "Bundle", "file_digest",
           "graph_tables", "sliced_table", "table_key"]

FORMAT = "slimcodec-bundle"
VERSION = 1
MANIFEST = "manifest.json"
TABLES = "entropy.npz"
GATE = "gate.npz"


def file_digest(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def table_key(width: int, anchor: int, name: str, domain: int = 0) -> str:
    """The key of one entropy table in ``entropy.npz`` (a domain's own tables prefixed)."""
    key = f"w{width}_a{anchor}_{name}"
    return f"d{domain}_{key}" if domain else key


#: The widest width a manifest may declare (the shipped models' is 192).
MAX_WIDTH = 4096
#: The most bytes the arrays of an ``.npz`` file may declare, all members together (the
#: shipped models' entropy tables take under 10 MB): since 0.4.0 the tables are stored
#: compressed, and a small forged file must not inflate into the reader's memory.
MAX_ARRAY_BYTES = 512 * 2**20


def load_arrays(path: Path) -> Any:
    """``np.load`` of a bundle's ``.npz`` file, once the sizes its members declare are
    within :data:`MAX_ARRAY_BYTES` (a zip member never inflates past its declared size)."""
    with zipfile.ZipFile(path) as z:
        declared = sum(info.file_size for info in z.infolist())
    if declared > MAX_ARRAY_BYTES:
        raise ValueError(f"its arrays declare {declared} bytes, over {MAX_ARRAY_BYTES}")
    return np.load(path)


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


def _check_entry(entry: Any) -> None:
    """A manifest's file entry: a plain file name in the bundle and a SHA-256; ValueError
    otherwise (so that no path outside the bundle is ever opened, or hashed)."""
    if not isinstance(entry, dict):
        raise ValueError("a file entry is not an object")
    name, digest = entry.get("file"), entry.get("sha256")
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or \
            "\\" in name or "\0" in name or os.path.isabs(name):
        raise ValueError(f"file {name!r} is not a plain name inside the bundle")
    if not isinstance(digest, str) or len(digest) != 64 or \
            any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"file {name!r} has no valid SHA-256")


def graph_tables(manifest: dict[str, Any]) -> list[dict[str, dict[str, dict[str, Any]]]]:
    """A manifest's graph tables (width -> kind -> ``{"file", "sha256"}``): the source's,
    each built-in domain's, and the mixing graphs' where it has them."""
    tables = [manifest["graphs"],
              *(d["graphs"] for d in (manifest.get("domains") or {}).values())]
    if "mixture" in manifest:
        tables.append(manifest["mixture"]["graphs"])
    return tables


def sliced_table(source: np.ndarray, shape: Any) -> np.ndarray:
    """The leading slice of ``source`` a manifest's ``table_slices`` entry names (an array
    stored once for every width, :mod:`slimcodec_edge.shared_weights`); ValueError unless
    the shape fits inside it."""
    shape = [int(n) for n in shape]
    if len(shape) != source.ndim or any(not 0 < n <= m for n, m in zip(shape, source.shape,
                                                                      strict=True)):
        raise ValueError(f"slice {shape} does not fit an array of shape {list(source.shape)}")
    return source[tuple(slice(0, n) for n in shape)]


@dataclass
class Bundle:
    """A checked bundle. :meth:`load` raises :class:`BundleError` on anything amiss."""

    root: Path
    manifest: dict[str, Any]
    _arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    _shared_checked: bool = field(default=False, repr=False)

    @classmethod
    def load(cls, root: str | os.PathLike) -> Bundle:
        root = Path(root)
        path = root / MANIFEST
        try:
            manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise BundleError(f"{root}: not a bundle (no {MANIFEST})") from None
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise BundleError(f"{path}: unreadable manifest ({_short(exc)})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{path}: not a slimcodec bundle manifest")
        if manifest.get("version") != VERSION:
            raise BundleError(f"{path}: unsupported bundle version {manifest.get('version')}")
        bundle = cls(root, manifest)
        try:
            bundle._check()
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{path}: malformed manifest ({exc})") from None
        return bundle

    def _check(self) -> None:
        m = self.manifest
        if len(bytes.fromhex(m["fingerprint"])) != FINGERPRINT_SIZE:
            raise ValueError("bad fingerprint")
        if not m["widths"] or any(not 0 < int(w) <= MAX_WIDTH for w in m["widths"]):
            raise ValueError("bad widths")
        if not isinstance(m["downsampling"], int) or m["downsampling"] not in (16,):
            raise ValueError(f"bad downsampling {m['downsampling']!r}")
        for entry in self._file_entries():
            _check_entry(entry)
        graph_sets = [("", m["graphs"])]
        for domain, entry in self.domains.items():
            if not 0 < domain < 1 << 16 or not entry["name"]:
                raise ValueError(f"bad domain {domain}")
            as_source = entry.get("codes_as_source", False)
            if not isinstance(as_source, bool) or (as_source and entry.get("own_tables")):
                raise ValueError(f"bad codes_as_source of domain {domain}: an adapter with "
                                 "its own entropy tables codes its own strings")
            graph_sets.append((f", domain {domain}", entry["graphs"]))
        if self.latent_kind not in NETWORKS:
            raise ValueError(f"unknown latent kind {self.latent_kind!r}")
        for where, graphs in graph_sets:
            for w in self.widths:
                for kind in ("analysis", "synthesis", *self.coder_graphs):
                    if kind not in graphs[str(w)]:
                        raise ValueError(f"no {kind} graph for width {w}{where}")
        if "mixture" in m:
            members = self.mixture_domains
            if not members or len(set(members)) != len(members) or any(
                    d not in self.domains for d in members):
                raise ValueError(f"bad mixture domains {members}")
            for w in self.widths:
                if "synthesis" not in m["mixture"]["graphs"][str(w)]:
                    raise ValueError(f"no mixing synthesis graph for width {w}")
        if "gate" in m:
            gate = m["gate"]
            if not gate["domains"] or any(d not in self.mixture_domains
                                          for d in gate["domains"]):
                raise ValueError(f"bad gate domains {gate['domains']}")
            if any(w not in gate["widths"] for w in self.widths) or gate["channels"] < 1:
                raise ValueError("bad gate widths or channels")
        if self.default_domain not in (None, *self._gates(),
                                       *(e["name"] for e in self.domains.values())):
            raise ValueError(f"bad default domain {self.default_domain!r}")
        if self.variable_rate:
            lo, hi = self.lambda_bounds
            if not 0 < lo <= hi or self.rate_anchors < 1:
                raise ValueError("bad rate settings")
            if len(m["variable_rate"]["lambda_ranges"]) != len(self.widths):
                raise ValueError("one λ range per width expected")
        if any(not float(v) > 0 for v in (m.get("rd_lambdas") or {}).values()):
            raise ValueError("bad training λ")
        if not (self.root / TABLES).is_file():
            raise BundleError(f"{self.root}: bundle has no {TABLES}")
        if "tables_sha256" not in m:
            raise BundleError(f"{self.root}: bundle records no checksum of {TABLES} (exported "
                              "by an older slimcodec: export it again)")
        self._checked({"file": TABLES, "sha256": m["tables_sha256"]}, "entropy tables")

    def _file_entries(self) -> list[dict[str, Any]]:
        """Every ``{"file", "sha256"}`` entry the manifest holds: the graphs (int8 ones
        included, as ``*_int8`` keys beside the float ones) and the gate's arrays."""
        m = self.manifest
        entries = [g for graphs in graph_tables(m) for per_width in graphs.values()
                   for g in per_width.values()]
        return entries + [m[k] for k in ("gate", "shared_weights") if k in m]

    # -- what the manifest says -------------------------------------------------------------

    @property
    def int8_only(self) -> bool:
        """Whether the analysis and synthesis graphs are int8 ones, with no float ones."""
        return bool((self.manifest.get("int8") or {}).get("only"))

    @property
    def name(self) -> str:
        return str(self.manifest.get("model", self.root.name))

    @property
    def fingerprint(self) -> bytes:
        return bytes.fromhex(self.manifest["fingerprint"])

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(int(w) for w in self.manifest["widths"])

    @property
    def downsampling(self) -> int:
        return int(self.manifest["downsampling"])

    @property
    def latent_kind(self) -> str:
        """How the latent is coded (:mod:`slimcodec.latent`)."""
        return str(self.manifest.get("latent", "factorized"))

    @property
    def coder_graphs(self) -> tuple[str, ...]:
        """The graphs its latent coder runs, besides analysis and synthesis."""
        return NETWORKS.get(self.latent_kind, ())

    @property
    def variable_rate(self) -> bool:
        return self.manifest.get("variable_rate") is not None

    @property
    def lambda_bounds(self) -> tuple[float, float]:
        lo, hi = self.manifest["variable_rate"]["lambda_bounds"]
        return float(lo), float(hi)

    @property
    def rate_anchors(self) -> int:
        return int(self.manifest["variable_rate"]["rate_anchors"]) if self.variable_rate else 1

    def lambda_range(self, width: int) -> tuple[float, float]:
        lo, hi = self.manifest["variable_rate"]["lambda_ranges"][self.widths.index(width)]
        return float(lo), float(hi)

    @property
    def clipping_int8_means(self) -> bool:
        """Whether the bundle's int8 ``hyper_mean`` graphs quantise their activations, as
        slimcodec 0.5.0 exported them: the means of an image beyond the ranges the
        calibration reached were clipped (:data:`slimcodec_edge.quantize.WEIGHTS_ONLY`).
        Exports since record the graphs they quantise as weights alone (``int8.weights_only``).
        """
        int8 = self.manifest.get("int8")  # none yet while the exporter quantises
        if not int8 or "hyper_mean" in int8.get("weights_only", ()):
            return False
        return any(kind.startswith("hyper_mean") and g["file"].endswith(".int8.onnx")
                   for graphs in graph_tables(self.manifest) for per_width in graphs.values()
                   for kind, g in per_width.items())

    def rd_weight(self, width: int, lmbda: float | None) -> float:
        """The λ that weighs rate against distortion at ``width``: the file's for a
        variable-rate bundle, the width's training λ (``rd_lambdas``) for a single-rate one."""
        if lmbda is not None:
            return lmbda
        weights = self.manifest.get("rd_lambdas") or {}
        if str(width) not in weights:
            raise BundleError(f"{self.root}: bundle records no training λ for width {width}, "
                              "which the gate needs (re-export it with this slimcodec)")
        return float(weights[str(width)])

    @property
    def domains(self) -> dict[int, dict[str, Any]]:
        """The domain adapters built in, by the id files carry: name, method, graphs."""
        return {int(k): v for k, v in (self.manifest.get("domains") or {}).items()}

    @property
    def default_domain(self) -> str | None:
        """What the edge command line encodes with where it is told no ``--domain``: the
        ``domain=`` value of the codec the bundle was exported from (``"auto"`` for a model
        exported with its shipped adapters), or None, the model alone."""
        return self.manifest.get("default_domain")

    def _gates(self) -> tuple[str, ...]:
        """The gates this bundle can run: ``auto`` with adapters, ``mix`` with a mixing
        graph, ``gate`` with a learned gate."""
        m = self.manifest
        return tuple(g for g, has in (("auto", "domains" in m), ("mix", "mixture" in m),
                                      ("gate", "gate" in m)) if has)

    def domain_id(self, name: str) -> int:
        """The id of the built-in domain adapter called ``name``."""
        for domain, entry in self.domains.items():
            if entry["name"] == name:
                return domain
        known = ", ".join(repr(e["name"]) for e in self.domains.values()) or "none"
        raise ModelMismatchError(f"{self.name} has no adapter for domain {name!r} "
                                 f"(built in: {known})")

    @property
    def mixture_domains(self) -> tuple[int, ...]:
        """The ids of the adapters the mixing graphs weigh, in the order of their ``weights``
        input (empty: the bundle cannot decode mixed files)."""
        return tuple(int(d) for d in (self.manifest.get("mixture") or {}).get("domains", ()))

    def anchor(self, lmbda: float | None) -> int:
        if lmbda is None:
            return 0
        return anchor_index(lmbda, self.lambda_bounds, self.rate_anchors)

    # -- files --------------------------------------------------------------------------------

    def graph(self, width: int, kind: str, int8: bool = False, domain: int = 0) -> Path:
        """The checked path of a width's ``analysis`` / ``synthesis`` graph (of a domain's
        adapter, for ``domain`` > 0)."""
        graphs = self.manifest["graphs"] if not domain else self._domain(domain)["graphs"]
        int8 = int8 and not self.int8_only  # an int8-only bundle's graphs are the int8 ones
        per_width = graphs.get(str(width), {})
        if int8 and kind not in ("analysis", "synthesis") and f"{kind}_int8" not in per_width:
            int8 = False  # a bundle from before int8 coder networks
        entry = per_width.get(f"{kind}_int8" if int8 else kind)
        if entry is None:
            what = f"{kind} graph{' (int8)' if int8 else ''}"
            where = f", domain {domain}" if domain else ""
            raise BundleError(f"{self.root}: no {what} for width {width}{where}")
        return self._with_shared(self._checked(entry))

    def _with_shared(self, graph: Path) -> Path:
        """``graph``, once the weights file the float graphs slice (a lean bundle's,
        :mod:`slimcodec_edge.shared_weights`) is checked too: once per bundle."""
        entry = self.manifest.get("shared_weights")
        if entry is not None and not self._shared_checked:
            self._checked(entry, "shared weights")
            self._shared_checked = True
        return graph

    def mixture_graph(self, width: int, int8: bool = False) -> Path:
        """The checked path of a width's mixing synthesis graph (its int8 one where asked
        for and exported; bundles from before int8 mixing graphs have the float one)."""
        entry = (self.manifest.get("mixture") or {}).get("graphs", {}).get(str(width), {})
        if "synthesis" not in entry:
            raise ModelMismatchError(f"{self.name}'s bundle has no graphs that mix domain "
                                     "adapters (export it with its bias or adapters --adapter "
                                     "files)")
        kind = "synthesis_int8" if int8 and "synthesis_int8" in entry else "synthesis"
        return self._with_shared(self._checked(entry[kind]))

    def gate(self) -> GateArrays:
        """The learned gate's arrays (checked against the manifest's SHA-256)."""
        entry = self.manifest.get("gate")
        if entry is None:
            raise ModelMismatchError(f"{self.name}'s bundle has no learned gate (export it "
                                     "with --gate and the gate's --adapter files)")
        path = self._checked(entry, "gate")
        try:
            with load_arrays(path) as npz:
                w1, b1, w2, b2 = (np.asarray(npz[k], np.float32) for k in ("w1", "b1", "w2", "b2"))
        except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path}: damaged gate arrays ({exc})") from None
        features = 2 * entry["channels"] + len(entry["widths"]) + 1
        if (w1.shape != (b1.shape[0], features) or w2.shape != (len(entry["domains"]) + 1,
                                                                b1.shape[0])
                or b2.shape != (w2.shape[0],)):
            raise BundleError(f"{path}: gate arrays do not fit the manifest")
        bounds = entry["lambda_bounds"]
        return GateArrays(w1, b1, w2, b2, tuple(int(d) for d in entry["domains"]),
                          int(entry["channels"]), tuple(int(w) for w in entry["widths"]),
                          (float(bounds[0]), float(bounds[1])) if bounds else None)

    def _checked(self, entry: dict[str, Any], what: str = "graph") -> Path:
        """A file entry's path, once its file is there and its SHA-256 matches."""
        try:  # a name inside the bundle, before anything is opened
            _check_entry(entry)
        except ValueError as exc:
            raise BundleError(f"{self.root / MANIFEST}: {exc}") from None
        path = self.root / entry["file"]
        if path.is_symlink():
            raise BundleError(f"{path}: {what} is a link; a bundle's files are in its folder")
        if not path.is_file():
            raise BundleError(f"{path}: {what} file missing from the bundle")
        if file_digest(path) != entry["sha256"]:
            raise BundleError(f"{path}: damaged {what} (SHA-256 mismatch)")
        return path

    def _domain(self, domain: int) -> dict[str, Any]:
        entry = self.domains.get(domain)
        if entry is None:
            raise ModelMismatchError(f"{self.name} has no adapter for domain id {domain} "
                                     "(export the bundle with that domain's --adapter)")
        return entry

    def coder(self, width: int, lmbda: float | None, domain: int = 0,
              networks: dict[str, Network] | None = None) -> LatentCoder:
        """The latent coder of ``width`` (and λ, and domain: its own entropy models if its
        adapter has them, else the source's), with ``networks`` running its graphs."""
        if domain and not self._domain(domain).get("own_tables"):
            domain = 0
        prefix = table_key(width, self.anchor(lmbda), "", domain)
        try:
            if prefix not in self._arrays:
                with load_arrays(self.root / TABLES) as npz:
                    arrays = {k[len(prefix):]: npz[k] for k in npz.files
                              if k.startswith(prefix)}
                    for key, ref in (self.manifest.get("table_slices") or {}).items():
                        if key.startswith(prefix):  # stored once, in a wider width's keys
                            arrays[key[len(prefix):]] = sliced_table(npz[ref["of"]],
                                                                     ref["shape"])
                self._arrays[prefix] = arrays
            coder = coder_from_arrays(self.latent_kind, self._arrays[prefix], networks)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{self.root / TABLES}: damaged or incomplete entropy tables "
                              f"for width {width} ({exc})") from None
        if coder.channels != width:
            raise BundleError(f"{self.root / TABLES}: tables of width {width} have "
                              f"{coder.channels} channels")
        return coder
