#!/usr/bin/env bash
# Install the pinned PyTorch (torch==2.13.0) before the project, so that its own install keeps this build.
# From PyPI on Linux this is the CUDA build, which brings NVIDIA's CUDA packages (several GB). On a machine
# without an NVIDIA GPU, take the CPU-only wheel from PyTorch's own index instead:
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu bash scripts/demo.sh
# (any PyTorch index works the same way, e.g. .../whl/cu126 for another CUDA version).
set -euo pipefail
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  python3 -m pip install -q torch==2.13.0 --index-url "${TORCH_INDEX_URL}"
else
  python3 -m pip install -q torch==2.13.0
fi
