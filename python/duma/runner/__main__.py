"""``python -m duma.runner [--workdir DIR]``: serve a model template over stdin/stdout.

The protocol owns the process's original stdin and stdout. Before anything else is imported,
they are moved to private file descriptors, fd 1 (and ``sys.stdout``) is pointed at stderr and
fd 0 (and ``sys.stdin``) at /dev/null, so a template that prints, or a C library that writes to
fd 1, cannot corrupt a frame, and one that reads stdin cannot eat a request.
"""

import os
import sys


def _take_protocol_channel():
    sys.stdout.flush()
    out_fd = os.dup(1)
    in_fd = os.dup(0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull, "r")
    for fd in (in_fd, out_fd):
        os.set_inheritable(fd, False)
    return os.fdopen(in_fd, "rb"), os.fdopen(out_fd, "wb")


def main(argv=None) -> int:
    inp, out = _take_protocol_channel()

    import argparse

    parser = argparse.ArgumentParser(prog="python -m duma.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="directory to run in; relative paths in requests resolve against it")
    parser.add_argument("--max-frame-bytes", type=int, default=None, help="largest frame accepted or sent")
    parser.add_argument(
        "--max-inline-bytes", type=int, default=None, help="predictions larger than this go to a file"
    )
    args = parser.parse_args(argv)
    if args.workdir:
        os.chdir(args.workdir)

    from .. import compat
    from .server import Runner

    compat.install()
    options = {}
    if args.max_frame_bytes:
        options["max_frame_bytes"] = args.max_frame_bytes
    if args.max_inline_bytes is not None:
        options["max_inline_bytes"] = args.max_inline_bytes
    return Runner(inp, out, **options).serve()


def run() -> None:
    """Console-script entry point."""
    code = main()
    # Exit now: threads a template left running (or atexit hooks of ML frameworks) must not keep
    # the process alive after `shutdown`; everything the worker needs was flushed with the reply.
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
