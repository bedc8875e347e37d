# Redis from Debian, like the official image: runs as `redis`, data in /data.
ARG BASE
FROM ${BASE}
RUN mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
CMD ["redis-server"]
