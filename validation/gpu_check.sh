#!/usr/bin/env bash
# The GPU check (validation/GPU_CHECK.md): on a bare GPU machine with torch, install the project's
# other needs from the wheels carried in .whl/ (validation/gpu_wheels.sh makes them) when simpy or
# cvxpy is missing, then run
# validation/gpu_check.py, which writes $OUT/gpu_check.json and $OUT/gpu_check.log (runs/gpu_check/
# when OUT is unset).
#
#   bash validation/gpu_check.sh                       # on the GPU (default --device cuda)
#   bash validation/gpu_check.sh --device cpu --quick  # dry run here
#
# Any argument is passed on to gpu_check.py (--help lists them). PYTHON picks the interpreter
# (default: python3). Exit status: 0 all passed, 1 a part failed, 2 bad input.
set -u
cd "$(dirname "$0")/.." || exit 2
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: error: no Python interpreter '$PY' (set PYTHON)" >&2
    exit 2
fi
"$PY" validation/gpu_check.py --validate-only "$@" || exit $?  # bad input: one line, exit 2, nothing done
SITE=""
if compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c "import simpy, cvxpy" >/dev/null 2>&1; then
    SITE="${GPU_CHECK_SITE:-/tmp/gpu_check_site}"
    t0=$(date +%s)
    if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
            >/tmp/gpu_check_pip.log 2>&1; then
        echo "gpu_check: warning: installing the carried wheels failed (tail of the pip log below); going on" >&2
        tail -n 5 /tmp/gpu_check_pip.log >&2
    else
        echo "gpu_check: installed $(ls .whl/*.whl | wc -l) carried wheel(s) into $SITE in $(( $(date +%s) - t0 )) s"
    fi
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
exec "$PY" validation/gpu_check.py "$@"
