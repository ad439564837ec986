#!/usr/bin/env bash
# The GPU run, prepared in one script for a lent GPU machine (see ../shared/gpu/README.md: torch 2.11 with
# CUDA there, no PyAV or platformdirs). Here, first:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 platformdirs==4.3.6
# then run this script there from the checkout with .whl carried along. About 5 minutes on an H200 host.
# It writes $OUT/gpu.jsonl (every figure, then the targets line), $OUT/gpu.log (everything it printed) and
# $OUT/pytest.txt (the GPU-relevant tests, run on CUDA), or the same files in ./ without $OUT.
# QUICK=1 runs the same code on the CPU with tiny clips (a check that nothing in it is broken).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
mkdir -p "$out"
exec > >(tee -a "$out/gpu.log") 2>&1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
py="${PYTHON:-python3}"
if [ "${QUICK:-0}" = 1 ]; then
  PYTHONUNBUFFERED=1 "$py" bench/gpu.py --device cpu --quick --style "${STYLE:-hayao}" --out "$out/scratch" \
    | tee "$out/gpu.jsonl"
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$out/gpu.txt"
"$py" -c "import torch, av; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__)"
# The CPU-tested GPU code paths, now on the GPU: GroupNorm1 against nn.GroupNorm in fp16.
"$py" - <<'PY'
import copy, torch
from stream.model import Generator, with_parallel_group_norm
m = Generator().cuda().half().eval()
f = with_parallel_group_norm(copy.deepcopy(m))
x = torch.rand(4, 3, 288, 512, device="cuda").half() * 2 - 1
with torch.no_grad():
    d = (m(x).float() - torch.jit.script(f)(x).float()).abs()
print({"groupnorm1_vs_groupnorm_fp16": {"max": round(float(d.max()), 4), "mean": round(float(d.mean()), 5)}})
PY
scratch="$(mktemp -d /tmp/animestream-gpu.XXXXXX)"
# SECTIONS (bench/gpu.py --sections), VARIANTS (--variants), BENCH_S and TEST_S fit the run to a shorter lease.
PYTHONUNBUFFERED=1 timeout "${BENCH_S:-300}" "$py" bench/gpu.py --style "${STYLE:-hayao}" --out "$scratch" \
  --job-timeout 90 --sections "${SECTIONS:-rss,stages,models,files,live}" --variants "${VARIANTS:-}" \
  | tee "$out/gpu.jsonl" || echo "bench/gpu.py stopped early: exit $?"
# The tests of the files a GPU run goes through, on CUDA (--device auto means the GPU here; the web, Ray and
# virtual-camera extras are not installed there); at most 100 s.
tests="${TESTS:-tests/test_gpu_path.py tests/test_engine.py tests/test_convert.py tests/test_pipeline.py tests/test_policy.py tests/test_quant.py tests/test_cli.py}"
# shellcheck disable=SC2086
timeout "${TEST_S:-100}" "$py" -m pytest -q -p no:cacheprovider $tests 2>&1 | tail -40 \
  | tee "$out/pytest.txt" || true
