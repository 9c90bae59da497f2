#!/usr/bin/env bash
# The GPU check in one run on a bare GPU machine, from a copy of the working tree.
#
#   OUT=/some/folder bench/gpu_check.sh [bench/gpu_check.py options, e.g. --engine DIR --index DIR]
#
# Makes a venv that sees the machine's own packages (a GPU image's torch, say), installs into it
# what the project's `serve`, `train` and `gpu` extras name: from PyPI when PyPI answers, else
# from wheels carried in .whl/, else nothing (steps whose packages are missing say so). Then runs
# bench/gpu_check.py, each step under its own time bound. $OUT (default var/gpu-check) gets
# gpu.md (the report), gpu.json and gpu_check.log; nothing else is written there.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-var/gpu-check}"
VENV="${GPU_CHECK_VENV:-/tmp/xmodal-gpu-check-venv}"
PYTHON="${PYTHON:-python3}"
export OUT PYTHONUNBUFFERED=1

install() {
  "$PYTHON" -m venv --system-site-packages "$VENV"
  local pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
  local probe
  probe="$(mktemp -d)"
  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "installing the wheels carried in .whl/ (no index)"
    "${pip[@]}" install -q --no-index --no-deps --no-compile .whl/*.whl
  elif timeout 60 "${pip[@]}" download -q --no-deps -d "$probe" pip >/dev/null 2>&1; then
    echo "installing the serve, train and gpu extras from the package index"
    "${pip[@]}" install -q -e '.[serve,train,gpu]'
    # the serve extra's CPU builds and the gpu extra's GPU builds are the same modules (faiss,
    # onnxruntime): whichever was unpacked last wins, so the CPU ones go and the GPU ones, at
    # the versions pip resolved, are put back on top (as the Dockerfile's gpu stage does)
    local gpu ort
    mapfile -t gpu < <("${pip[@]}" freeze | grep -E '^(onnxruntime-gpu|faiss-gpu-cu12)==')
    "${pip[@]}" uninstall -q -y faiss-cpu onnxruntime
    if [ "${#gpu[@]}" -gt 0 ]; then "${pip[@]}" install -q --force-reinstall --no-deps "${gpu[@]}"; fi
    # the CUDA and cuDNN libraries onnxruntime-gpu is built against, as wheels (its extras):
    # a bare machine has none, and faiss-gpu-cu12 brings only its own
    ort="$(printf '%s\n' "${gpu[@]}" | grep '^onnxruntime-gpu==' || true)"
    if [ -n "$ort" ]; then "${pip[@]}" install -q "${ort/==/[cuda,cudnn]==}"; fi
  else
    echo "no package index and no .whl/: checking with this machine's packages only"
  fi
  rm -rf "$probe"
}

main() {
  echo "== gpu check: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname)"
  if command -v nvidia-smi >/dev/null; then nvidia-smi -L || true; fi
  install
  "$VENV/bin/python" -m pip list 2>/dev/null | grep -iE '^(numpy|faiss[-a-z0-9]*|onnxruntime[-a-z]*|torch) ' || true
  "$VENV/bin/python" -m bench.gpu_check --out "$OUT" --standin "$@"
}

mkdir -p "$OUT"
main "$@" 2>&1 | tee "$OUT/gpu_check.log"
