#!/usr/bin/env bash
# Create a throwaway virtualenv with RecBole 1.2.1 on the CPU build of torch 2.13.0.
#
#   bash benchmarks/recbole/setup_venv.sh            # -> /tmp/recbole-venv
#   RECBOLE_VENV=/some/where bash benchmarks/recbole/setup_venv.sh
#
# Idempotent: if the venv already imports recbole 1.2.1 + torch 2.13.0 it does nothing.
#
# Pins (why):
#   torch==2.13.0       the version seqrec is benchmarked with (a local CPU wheel exists; no other
#                       torch version may be pulled in, that would download GBs of CUDA wheels).
#   numpy<2             recbole/config/configurator.py::compatibility_settings() does
#                       `np.float = np.float_` etc.; np.float_/np.unicode_ were removed in numpy 2.
#   pandas<2.3, scipy<1.14, scikit-learn<1.6
#                       conservative: last lines that support numpy 1.26 and that RecBole 1.2.1's
#                       code paths (sparse matrices, DataFrame ops) were used with.
#   colorlog==4.7.2, colorama==0.4.4, ray<=2.6.3
#                       exact/upper pins taken from RecBole's own metadata.
#   setuptools<81       ray 2.6 / tensorboard still import pkg_resources.
# Runtime patches (torch.load weights_only, etc.) live in run_recbole_sasrec.py, not here:
# nothing inside site-packages is edited.
set -euo pipefail

VENV="${RECBOLE_VENV:-/tmp/recbole-venv}"
PY="${PYTHON:-python3}"

check() {
    "$VENV/bin/python" - <<'EOF' 2>/dev/null
import recbole, torch, numpy
from recbole.quick_start import run_recbole  # noqa: F401  (pulls in ray)
from recbole.model.sequential_recommender import SASRec  # noqa: F401
assert recbole.__version__ == "1.2.1", recbole.__version__
assert torch.__version__.split("+")[0] == "2.13.0", torch.__version__
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
EOF
}

if [ -x "$VENV/bin/python" ] && check; then
    echo "recbole venv already set up at $VENV"
    exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

# 1) torch first, exactly 2.13.0 CPU (the local wheel / index provides it).
"${PIP[@]}" "torch==2.13.0"

# 2) RecBole and its deps, with torch held at the installed version so the resolver
#    can never swap it for another build.
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
"$VENV/bin/python" -c 'import torch; print("torch==" + torch.__version__)' >"$CONSTRAINTS"
"${PIP[@]}" -c "$CONSTRAINTS" \
    "recbole==1.2.1" \
    "numpy<2" \
    "pandas<2.3" \
    "scipy<1.14" \
    "scikit-learn<1.6" \
    "colorlog==4.7.2" \
    "colorama==0.4.4" \
    "ray<=2.6.3" \
    "setuptools<81" \
    thop tensorboard tabulate plotly texttable psutil pyyaml tqdm

if ! check; then
    echo "ERROR: venv at $VENV does not import recbole 1.2.1 with torch 2.13.0" >&2
    "$VENV/bin/python" -c 'import recbole, torch, numpy; print(recbole.__version__, torch.__version__, numpy.__version__)' >&2 || true
    exit 1
fi
"$VENV/bin/python" -m pip freeze >"$VENV/recbole-freeze.txt"
echo "recbole venv ready at $VENV in $(( $(date +%s) - start )) s (pip freeze in $VENV/recbole-freeze.txt)"
