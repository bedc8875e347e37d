# The stand-in for the `minio/minio` image on machines without a registry: s3s-fs (crates.io), an
# S3 server over a folder, with MinIO's interface where compose uses it: root user and password
# from MINIO_ROOT_USER / MINIO_ROOT_PASSWORD (or MinIO's secret files), port 9000, data in /data
# (a bucket is a folder), and `mc ready local` for the healthcheck. Build context: a folder
# holding the s3s-fs binary, s3-entrypoint.sh and mc (build-images makes it).
ARG BASE
FROM ${BASE}
COPY s3s-fs /usr/local/bin/s3s-fs
COPY s3-entrypoint.sh mc /usr/local/bin/
RUN useradd --system --home-dir /data --shell /usr/sbin/nologin s3 \
    && mkdir -p /data && chown s3:s3 /data
USER s3
WORKDIR /data
ENTRYPOINT ["s3-entrypoint.sh"]
