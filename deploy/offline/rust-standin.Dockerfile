# A stand-in for the public `rust` image, made from the offline base, this host's Rust toolchain
# (build context: toolchain/) and this host's CA bundle (ca-certificates.crt), so that
# check-dockerfile can build deploy/Dockerfile itself on a machine without a registry.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY toolchain/ /usr/local/rust/
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HOME=/usr/local/cargo
