#!/bin/sh
# `s3-entrypoint.sh server /data …` (MinIO's command line; the options after it are MinIO's and
# ignored) serves /data on port 9000 with MinIO's root user and password as the only key: from
# MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, or, as MinIO does, from the Docker secrets named by
# MINIO_ROOT_USER_FILE / MINIO_ROOT_PASSWORD_FILE (default `access_key` and `secret_key`).
# Anything else is run as given (`mkdir -p /data/duma` makes a bucket).
set -eu
secret() {
    case "$1" in
        /*) cat "$1" ;;
        *) cat "/run/secrets/$1" ;;
    esac
}
if [ "${1:-}" = "server" ]; then
    user="${MINIO_ROOT_USER:-$(secret "${MINIO_ROOT_USER_FILE:-access_key}")}"
    password="${MINIO_ROOT_PASSWORD:-$(secret "${MINIO_ROOT_PASSWORD_FILE:-secret_key}")}"
    exec s3s-fs --host 0.0.0.0 --port 9000 --access-key "$user" --secret-key "$password" "${2:-/data}"
fi
exec "$@"
