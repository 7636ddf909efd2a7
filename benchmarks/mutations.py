"""Mutation testing of the toolkit's own checks: delete or weaken one check, run the tests
that guard that part, and see them fail. A mutation no test catches is a check nothing
guards (issue 32 found five). Each mutation is applied to the source, the tests run in a
child process, and the file is restored (the compiled coder rebuilt where it was touched),
whatever happens. Writes the RESULTS.md section ``mutations``.

    python benchmarks/mutations.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common import table_head, write_section

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = (
    Mutation("C coder: end-of-string check deleted", "slimcodec/bitstream/_rans.c",
             "        if (d->pos >= d->words) return 0;", "        /* mutated */",
             ("tests/test_rans.py",)),
    Mutation("C coder: final-state check deleted", "slimcodec/bitstream/_rans.c",
             '    if (d->x != RANS_L) return "entropy-coded string does not end in the coder\'s '
             'initial state";', "    /* mutated */", ("tests/test_rans.py",)),
    Mutation("Python coder: final-state check deleted", "slimcodec/bitstream/rans.py",
             "    if x != _L:\n", "    if False:\n", ("tests/test_rans.py",)),
    Mutation("Python coder: bypass-length check deleted", "slimcodec/bitstream/rans.py",
             "            if nibbles > _MAX_NIBBLES:\n                raise",
             "            if False:\n                raise", ("tests/test_rans.py",)),
    Mutation("container: CRC check deleted", "slimcodec/bitstream/container.py",
             "    if zlib.crc32(data[: expected - _CRC.size]) != crc:", "    if False:",
             ("tests/test_bitstream.py",)),
    Mutation("container: trailing-bytes check deleted", "slimcodec/bitstream/container.py",
             "    if len(data) > expected:", "    if False:", ("tests/test_bitstream.py",)),
    Mutation("tiling: default halo 3 -> 1", "slimcodec/tiling.py", "DEFAULT_HALO = 3",
             "DEFAULT_HALO = 1", ("tests/test_tiling.py", "tests/test_hardening.py")),
    Mutation("bundle: channels check of the tables deleted", "export/bundle.py",
             "        if coder.channels != width:", "        if False:",
             ("tests/test_bundle_hardening.py", "tests/test_edge.py")),
    Mutation("bundle: file names not confined to the folder", "export/bundle.py",
             '    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name',
             '    if not isinstance(name, str) or not name',
             ("tests/test_bundle_hardening.py",)),
    Mutation("bundle: entropy tables' SHA-256 not checked", "export/bundle.py",
             '        self._checked({"file": TABLES, "sha256": m["tables_sha256"]}, '
             '"entropy tables")', "        pass", ("tests/test_bundle_hardening.py",)),
    Mutation("adapters: source fingerprint not checked", "slimcodec/adaptation/adapters.py",
             "        if fp != self.source_fingerprint:", "        if False:",
             ("tests/test_adaptation.py",)),
    Mutation("rate control: unreachable target not refused", "slimcodec/rate_control.py",
             "    if top[2] < -slack:\n        return None", "    if False:\n        return None",
             ("tests/test_variable_rate.py",)),
    Mutation("integer scales: input bound not applied", "slimcodec/integer_scales.py",
             "x = np.clip(np.rint(x.astype(np.float64)), -INPUT_BOUND, INPUT_BOUND)",
             "x = np.rint(x.astype(np.float64))", ("tests/test_hyperprior.py",)),
    Mutation("output writer: devices and FIFOs replaced", "slimcodec/utils/io.py",
             "    if mode is not None and not stat.S_ISREG(mode):", "    if False:",
             ("tests/test_outputs.py",)),
    Mutation("model files: required fields not checked", "slimcodec/zoo/checkpoint.py",
             "        if not isinstance(payload.get(name), kind):", "        if False:",
             ("tests/test_files_hardening.py",)),
)


def rebuild() -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                    "-q", "-e", str(ROOT)], check=True, capture_output=True)


def run(mutation: Mutation, timeout: float) -> tuple[str, float, str]:
    """Apply, test, restore. Returns the outcome, seconds, and the first failing test."""
    path = ROOT / mutation.file
    original = path.read_text()
    if original.count(mutation.old) != 1:
        return "not applied (source changed)", 0.0, ""
    compiled = path.suffix == ".c"
    t0 = time.time()
    try:
        path.write_text(original.replace(mutation.old, mutation.new))
        if compiled:
            rebuild()
        child = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x",
                                "-p", "no:cacheprovider", *mutation.tests], cwd=ROOT,
                               capture_output=True, text=True, timeout=timeout)
        failed = next((line.split(" ")[1] for line in child.stdout.splitlines()
                       if line.startswith("FAILED ")), "")
        outcome = "caught" if child.returncode != 0 else "SURVIVED"
    except subprocess.TimeoutExpired:
        outcome, failed = "caught (hang)", ""
    finally:
        path.write_text(original)
        if compiled:
            rebuild()
    return outcome, time.time() - t0, failed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", help="mutations whose name contains one of these")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    rows = [table_head(["mutation", "file", "tests run", "outcome", "first failing test",
                        "seconds"])]
    survived = 0
    for m in chosen:
        outcome, seconds, failed = run(m, args.timeout)
        survived += outcome != "caught" and not outcome.startswith("caught")
        rows.append(f"| {m.name} | `{m.file}` | {', '.join(f'`{t}`' for t in m.tests)} | "
                    f"**{outcome}** | {f'`{failed}`' if failed else '—'} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    body = f"""## Mutations: does a test fail when a check is deleted?

Each row deletes or weakens one check in the source, runs the tests that guard that part
(`pytest -x`, in a child process) and restores the file. "caught": a test failed.
**{len(chosen) - survived} of {len(chosen)} caught, {survived} survived.**

{chr(10).join(rows)}
"""
    write_section("mutations", body)
    print(body)
    if survived:
        sys.exit(1)


if __name__ == "__main__":
    main()
