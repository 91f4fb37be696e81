#!/usr/bin/env bash
# The whole pipeline on the embedded demo data, from a fresh clone: install, build the demo dataset if it is
# missing, train configs/demo.yaml, build result/ and result.zip from the benchmark frames, score them against
# their ground truth, and draw a comparison picture. Extra arguments are config overrides for the training run
# (e.g. train.epochs=2).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_torch.sh  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu: the CPU-only wheel
python3 -m pip install -q -e .

# Missing, or built before the validation/benchmark split or the dark frames (README (d)): (re)build it, the same
# frames again (the builder is deterministic).
if [ ! -d data/demo/val ] || [ ! -d data/demo/dark ]; then
  python3 -m denoise.dataset.synth --out data/demo --force
fi

start=$(date +%s)
python3 -m denoise.train --config configs/demo.yaml "$@"
run=$(ls -td runs/demo-*/ | head -n 1)
echo "trained in $(( $(date +%s) - start )) s: ${run}"

# best.pth, the checkpoint every command uses by default: validation scored the weights on 13 whole frames of the
# validation split after every fourth epoch and kept the best (docs/experiments.md: over seeds it scores within
# 0.2 of last.pth on the benchmark).
python3 -m denoise.submit --checkpoint "${run}checkpoints/best.pth" --test-dir data/demo/test --out result --any-count
python3 -m denoise.sheet --noisy data/demo/test --pred result/data --gt data/demo/test_gt \
  --frames 0 13 29 --out "${run}comparison.png"
python3 -m denoise.evaluate --pred result/data --gt data/demo/test_gt --noisy data/demo/test \
  --json "${run}evaluation.json"
echo "comparison picture: ${run}comparison.png"
