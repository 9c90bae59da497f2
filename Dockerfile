# CPU serving image: the `serve` extra only (no torch). Engine and index bundles are mounted.
FROM python:3.11-slim AS serve
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XMODAL_ENGINE_DIR=/bundles/engine XMODAL_INDEX_DIR=/bundles/index XMODAL_HOST=0.0.0.0
WORKDIR /app
COPY pyproject.toml README.md ./
COPY encoders ./encoders
COPY index ./index
COPY service ./service
COPY training ./training
COPY xmodal ./xmodal
COPY bench ./bench
RUN pip install --no-cache-dir '.[serve]' && useradd --system --uid 10001 xmodal
USER xmodal
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=3 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
CMD ["xmodal", "serve"]
