"""A tiny UDP echo server: the far end of the network lab's flow (``lab up --network``).

It runs in the lab's ``server`` namespace, bound to the service address, and sends each
datagram back to where it came from, unchanged. A client that numbers its datagrams
then knows exactly which ones crossed the network both ways.
"""

from __future__ import annotations

import argparse
import socket


def serve(address: str, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    while True:
        data, peer = sock.recvfrom(65535)
        try:
            sock.sendto(data, peer)
        except OSError:  # no route back to that peer right now: the datagram is lost
            continue


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--address", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve(args.address, args.port)


if __name__ == "__main__":
    main()
