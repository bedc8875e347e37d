# Our services on the offline base image (deploy/offline/build-images). The build context holds
# host-built release binaries (bin/), the Python SDK (python/), ONNX Runtime's library
# (onnxruntime/) and runtime-setup.sh.
# deploy/Dockerfile builds the same image from source on public base images.
ARG BASE
FROM ${BASE}
COPY runtime-setup.sh /tmp/runtime-setup.sh
RUN sh /tmp/runtime-setup.sh && rm /tmp/runtime-setup.sh
COPY bin/ /usr/local/bin/
COPY python/ /usr/local/lib/duma/python/
COPY onnxruntime/ /usr/local/lib/duma/onnxruntime/
ENV DUMA_OBJECT_STORE__ROOT=/var/lib/duma/objects \
    DUMA_ONNX__RUNTIME_PATH=/usr/local/lib/duma/onnxruntime/libonnxruntime.so \
    DUMA_PYTHON__SDK_PATH=/usr/local/lib/duma/python \
    DUMA_PYTHON__ENV_DIR=/var/lib/duma/envs \
    DUMA_ADVISOR_WORKER__CACHE_DIR=/var/lib/duma/cache/advisor \
    DUMA_TRAIN_WORKER__CACHE_DIR=/var/lib/duma/cache/train \
    DUMA_INFERENCE_WORKER__CACHE_DIR=/var/lib/duma/cache/inference
USER duma
WORKDIR /var/lib/duma
CMD ["duma", "--help"]
