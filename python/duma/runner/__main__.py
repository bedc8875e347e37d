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


def _end_group():
    """Kills the other processes of the runner's group (what the template started), when the
    runner leads that group, as the worker starts it."""
    import signal

    me = os.getpid()
    if os.getpgrp() != me:
        return
    try:
        entries = os.listdir("/proc")
    except OSError:  # a sandbox without /proc: the whole group goes, this runner with it
        os.killpg(me, signal.SIGKILL)
        return
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == me:  # its process group
            try:
                os.kill(int(entry), signal.SIGKILL)
            except OSError:
                pass


def _die_with_the_worker(interval=1.0):
    """The worker kills the runner's group when a trial ends. If the worker itself dies (SIGKILL,
    OOM) while a template runs, nobody will: so an orphaned runner ends its group and exits."""
    import threading
    import time

    parent = os.getppid()

    def watch():
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                _end_group()
                os._exit(1)

    threading.Thread(target=watch, name="duma-orphan-watch", daemon=True).start()


def main(argv=None) -> int:
    inp, out = _take_protocol_channel()
    _die_with_the_worker()

    import argparse

    parser = argparse.ArgumentParser(prog="python -m duma.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", help="directory to run in; relative paths in requests resolve against it")
    parser.add_argument("--max-frame-bytes", type=int, default=None, help="largest frame accepted or sent")
    parser.add_argument(
        "--max-inline-bytes", type=int, default=None, help="predictions larger than this go to a file"
    )
    parser.add_argument(
        "--output-dir", default=None, help="where predictions too large for a frame are written (default: the workdir)"
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
    if args.output_dir:
        options["output_dir"] = args.output_dir
    return Runner(inp, out, **options).serve()


def run() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except BrokenPipeError:
        code = 1  # the worker went away mid-frame
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    # Exit now: threads a template left running (or atexit hooks of ML frameworks) must not keep
    # the process alive after `shutdown`; everything the worker needs was flushed with the reply.
    # Whatever the template started ends with the runner.
    try:
        sys.stderr.flush()
    finally:
        _end_group()
        os._exit(code)


if __name__ == "__main__":
    run()
