# Copyright (c) mmseg_wsbcn contributors. All rights reserved.
"""Exit with one line naming PORT if it cannot be bound on this machine.

Used by ``tools/dist_train.sh`` and ``tools/dist_test.sh`` before they start
torchrun (which would print a long traceback instead)::

    python tools/misc/check_port.py PORT TOOL_NAME
"""
import socket
import sys


def main() -> None:
    port, tool = int(sys.argv[1]), sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(('', port))
    except OSError as e:
        sys.exit(f'{tool}: error: port {port} is already in use on this '
                 f'machine ({e.strerror}); choose a free one, e.g. '
                 f'PORT={port + 1} {tool} ...')
    finally:
        s.close()


if __name__ == '__main__':
    main()
