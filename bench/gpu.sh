#!/usr/bin/env bash
# The GPU run, prepared in one script for a lent GPU machine (see ../shared/gpu/README.md: torch 2.11 with
# CUDA there, no PyAV or platformdirs). Here, first:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 platformdirs==4.3.6
# then run this script there from the checkout with .whl carried along. It writes $OUT/gpu.jsonl (or ./gpu.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch, av; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__)"
# The CPU-tested GPU code paths, now on the GPU: GroupNorm1 against nn.GroupNorm in fp16, batching order.
python3 - <<'PY'
import copy, torch
from stream.model import Generator, with_parallel_group_norm
m = Generator().cuda().half().eval()
f = with_parallel_group_norm(copy.deepcopy(m))
x = torch.rand(4, 3, 288, 512, device="cuda").half() * 2 - 1
with torch.no_grad():
    d = (m(x).float() - torch.jit.script(f)(x).float()).abs()
print({"groupnorm1_vs_groupnorm_fp16": {"max": round(float(d.max()), 4), "mean": round(float(d.mean()), 5)}})
PY
PYTHONUNBUFFERED=1 python3 bench/gpu.py --style "${STYLE:-hayao}" --compile | tee "$out/gpu.jsonl"
