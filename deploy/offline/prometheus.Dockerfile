# Prometheus from Debian, like prom/prometheus: the entry point is the server, data in /prometheus.
ARG BASE
FROM ${BASE}
RUN mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
