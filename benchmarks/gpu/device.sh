#!/usr/bin/env bash
# What the lent-GPU session runs (see run_jobs.py). The device image has torch but not pydantic
# (nor a recent typer): their wheels travel in .whl/, and the prepared dataset caches in
# .devdata/ (opening a cached store needs no polars). SKIP_WHEELS=1 skips the install (local
# dry runs); JOBS names the jobs file (benchmarks/gpu/jobs/NAME.yaml). Extra arguments go to
# run_jobs.py (e.g. --budget 470 --only JOB ...). How to run a session: benchmarks/gpu/README.md.
# .whl/ is git-ignored; on a fresh checkout rebuild it for the device's Python 3.12 with
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl pydantic==2.13.4 \
#     pydantic_core==2.46.4 annotated-types==0.7.0 typing-inspection==0.4.2 \
#     typing_extensions==4.15.0 typer==0.29.2
set -u
if [ -z "${SKIP_WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD/src
fi
export SEQREC_DATA_DIR=$PWD/.devdata/data SEQREC_CACHE_DIR=$PWD/.devdata/cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
# Many small training processes share one GPU: MPS lets their kernels run concurrently instead
# of time-slicing whole contexts. If the daemon or a client fails, carry on without it.
if command -v nvidia-cuda-mps-control >/dev/null; then
  export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
  mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
  # a warm machine may still run the daemon from the previous call: reuse it (pgrep -f, as
  # -x compares only the first 15 characters of the name and never matches this one)
  if { nvidia-cuda-mps-control -d || pgrep -f nvidia-cuda-mps-control >/dev/null; } \
      && timeout 40 python3 -c \
      "import torch; print('MPS client ok', torch.ones(2, device='cuda').sum().item())"; then
    echo "MPS on"
  else
    echo quit | timeout 10 nvidia-cuda-mps-control
    unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
    echo "MPS off"
  fi
fi
python3 -c "import torch, pydantic, typer, seqrec; print('torch', torch.__version__, torch.cuda.is_available(), 'pydantic', pydantic.VERSION, 'typer', typer.__version__)" || exit 1
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 20 >"$OUT/gpu_util.csv" 2>&1 &
python3 benchmarks/gpu/run_jobs.py "${JOBS:?set JOBS=benchmarks/gpu/jobs/NAME.yaml}" --out "$OUT" "$@" 2>&1 | tee "$OUT/log.txt"
# HSTU attention vs SDPA on the GPU (seconds; measured in round 1, SKIP_ATTN_SPEED=1 skips it);
# its result file travels back in $OUT
if [ -z "${SKIP_ATTN_SPEED:-}" ]; then
  (cd benchmarks && timeout 60 python3 hstu_attention_speed.py --device cuda) \
    && cp benchmarks/results/hstu_attention_speed_cuda.json "$OUT/"
fi
