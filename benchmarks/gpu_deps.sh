#!/usr/bin/env bash
# Prepares what benchmarks/gpu_suite.sh needs on the GPU machine and that machine lacks: nni (vitnas's
# search spaces use nni.mutable) and its pure-Python needs, copied from this machine's installed
# packages into .gpu_deps/ (git-ignored, about 11 MB). Carry .gpu_deps with the device call.
# nni's compiled-free sources run on the GPU machine's Python 3.12; its 61 MB wheel would not fit.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .gpu_deps && mkdir -p .gpu_deps
python3 - <<'PY'
import importlib, pathlib, shutil

for name in ("nni", "json_tricks", "schema", "typeguard"):
    module = importlib.import_module(name)
    source = pathlib.Path(module.__file__)
    if source.name == "__init__.py":
        shutil.copytree(source.parent, pathlib.Path(".gpu_deps") / source.parent.name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        shutil.copy2(source, ".gpu_deps")
    print(f"copied {name} from {source.parent}")
PY
du -sh .gpu_deps
