#!/usr/bin/env bash
# Wheels for the GPU machine (validation/GPU_CHECK.md), into .whl/ (git-ignored), for the device
# tool's `carry`. Its image (the device tool's KINDS.md) has Python 3.12 with torch, torchvision,
# numpy, scipy, numba, scikit-learn, matplotlib, pyyaml, markdown, rich, tqdm, threadpoolctl and
# pytest, but not simpy, cvxpy and its solvers, or mnist1d: those are fetched here, for CPython 3.12
# on x86-64 manylinux, at the versions this project is tested with.
#
# cvxpy's metadata also names scs (43 MB), highspy and sparsediffpy, and clarabel names cffi; none
# is imported until a problem asks for that solver, and the project's problems solve with clarabel
# and osqp (checked with those four blocked), so they stay behind: the carried tree has 64 MiB.
#
#   bash validation/gpu_wheels.sh        # run in the checkout the device tool sends
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
DEST=.whl
PKGS=(simpy==4.1.2 cvxpy==1.9.3 clarabel==0.11.1 osqp==1.1.3 qdldl==0.1.9.post1 mnist1d==0.0.2.post1)
mkdir -p "$DEST"
for spec in "${PKGS[@]}"; do  # one version of each package: two stop the whole install there
    rm -f "$DEST/${spec%%==*}"-*.whl
done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$DEST" "${PKGS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
echo "wheels in $DEST:"
for f in "$DEST"/*.whl; do
    deps=$(unzip -p "$f" '*/METADATA' 2>/dev/null | sed -n 's/^Requires-Dist: //p' | grep -v "extra ==" | tr '\n' ';' || true)
    printf '  %-80s %8s  needs: %s\n' "$(basename "$f")" "$(du -k "$f" | cut -f1)K" "${deps:-nothing}"
done
echo "total: $(du -ch "$DEST"/*.whl | tail -1 | cut -f1)"
if ! git check-ignore -q "$DEST/"; then
    echo "warning: $DEST/ is not git-ignored; add it to .gitignore (or .git/info/exclude)" >&2
fi
