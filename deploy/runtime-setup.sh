#!/bin/sh
# Shared by deploy/Dockerfile and deploy/offline/duma.Dockerfile: the unprivileged user every Duma
# service runs as, and the folders it writes (object store, worker caches).
set -eu
useradd --system --uid 10001 --user-group --home-dir /var/lib/duma --shell /usr/sbin/nologin duma
mkdir -p /var/lib/duma/objects /var/lib/duma/cache /var/lib/duma/envs
chown -R duma:duma /var/lib/duma
