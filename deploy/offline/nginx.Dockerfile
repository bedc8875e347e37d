# nginx from Debian, like the official image: the master runs in the foreground.
ARG BASE
FROM ${BASE}
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
