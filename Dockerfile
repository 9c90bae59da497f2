# xmodal images. Targets:
#   serve (the default, built by a plain `docker build`): CPU serving, the `serve` extra only
#   gpu:   CUDA runtime base, onnxruntime-gpu and faiss-gpu
#   train: training and the distributed index build (`train` and `distributed` extras, CPU torch)
# Engine and index bundles are never baked in: mount them at /bundles (see deploy/README.md).
# The serving stage stays last because `docker build` without --target builds the last stage.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

# Every pip run reads its package index from PyPI, or from a pip configuration handed in as the
# build secret `pip.conf` (`--secret id=pip.conf,src=...`): a mirror or a local wheel folder,
# with no trace of it left in an image.

# The project as one wheel, built once; each target installs it with its own extras from a
# bind mount, so no image keeps a copy of it.
FROM ${PYTHON_IMAGE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY encoders ./encoders
COPY index ./index
COPY service ./service
COPY training ./training
COPY bench ./bench
COPY xmodal ./xmodal
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

# Training and the distributed index build; KubeRay runs its head and workers from this image.
FROM ${PYTHON_IMAGE} AS train
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# KubeRay's default head and worker probes call wget; the default preset trains on Symbola's
# emoji glyphs (fonts-symbola).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget fonts-symbola \
    && rm -rf /var/lib/apt/lists/*
# The CPU wheel index too: its torch 2.13.0+cpu outranks PyPI's 2.13.0, which pulls the CUDA
# libraries (gigabytes) with it. Set TORCH_INDEX_URL empty where the pip configuration already
# offers torch 2.13.0+cpu.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Versions are bounded by the project's extras; open_clip_torch (OpenCLIP folders) comes without
# its dependencies, as in the Makefile: the extras hold what it imports.
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    pip install --no-cache-dir ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} \
        "$(echo /wheels/xmodal-*.whl)[serve,train,distributed]" \
    && pip install --no-cache-dir --no-deps "open_clip_torch==3.3.0" \
    && groupadd --system --gid 10001 xmodal \
    && useradd --system --uid 10001 --gid 10001 --create-home xmodal
USER 10001:10001
WORKDIR /home/xmodal
CMD ["xmodal", "--help"]

# GPU serving: the CUDA execution provider and GPU FAISS are chosen at start-up when a GPU is seen.
FROM ${CUDA_IMAGE} AS gpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    XMODAL_ENGINE_DIR=/bundles/engine XMODAL_INDEX_DIR=/bundles/index XMODAL_HOST=0.0.0.0 \
    XMODAL_PORT=8000
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv /opt/venv
# onnxruntime-gpu and faiss-gpu-cu12 install the same modules as the CPU wheels the `serve`
# extra lists, so the CPU wheels are removed and the GPU ones (the versions pip just resolved)
# reinstalled over the shared folders.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    pip install --no-cache-dir "$(echo /wheels/xmodal-*.whl)[serve,gpu]" \
    && pip freeze | grep -E '^(onnxruntime-gpu|faiss-gpu-cu12)==' > /tmp/gpu.txt \
    && pip uninstall -y onnxruntime faiss-cpu \
    && pip install --no-cache-dir --no-deps --force-reinstall -r /tmp/gpu.txt \
    && rm /tmp/gpu.txt \
    && groupadd --system --gid 10001 xmodal \
    && useradd --system --uid 10001 --gid 10001 --no-create-home xmodal
COPY deploy/healthcheck.py /opt/xmodal/healthcheck.py
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/xmodal/healthcheck.py"]
CMD ["xmodal", "serve"]

# The serving environment, assembled apart so the final image carries no wheel or pip cache.
FROM ${PYTHON_IMAGE} AS serve-venv
# hadolint ignore=DL3013
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir \
        "$(echo /wheels/xmodal-*.whl)[serve]"

# CPU serving: the `serve` extra only (no torch), non-root, bundles mounted at /bundles.
FROM ${PYTHON_IMAGE} AS serve
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    XMODAL_ENGINE_DIR=/bundles/engine XMODAL_INDEX_DIR=/bundles/index XMODAL_HOST=0.0.0.0 \
    XMODAL_PORT=8000
RUN groupadd --system --gid 10001 xmodal \
    && useradd --system --uid 10001 --gid 10001 --no-create-home xmodal
COPY --from=serve-venv /opt/venv /opt/venv
COPY deploy/healthcheck.py /opt/xmodal/healthcheck.py
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/xmodal/healthcheck.py"]
CMD ["xmodal", "serve"]
