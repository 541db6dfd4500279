#!/usr/bin/env python
"""Subscribe to a running pipeline and print the poses, events and metrics it publishes.

    python examples/subscribe.py --endpoint tcp://127.0.0.1:5555 --stream cam0

Payloads are msgpack maps documented in docs/schema.md; frame 1 of each message is the topic.
"""

from __future__ import annotations

import argparse
import sys

import msgpack
import zmq


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", default="tcp://127.0.0.1:5555")
    ap.add_argument("--prefix", default="nbf")
    ap.add_argument("--stream", default="", help="stream id (default: all streams)")
    ap.add_argument("--count", type=int, default=0, help="stop after this many poses (0: never)")
    ap.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        help="give up after this many seconds without a message (0: wait forever)",
    )
    args = ap.parse_args(argv)

    topic = f"{args.prefix}/{args.stream}/" if args.stream else f"{args.prefix}/"
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100)
    sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sock.connect(args.endpoint)
    poses = 0
    try:
        while args.count == 0 or poses < args.count:
            if args.timeout and not sock.poll(int(args.timeout * 1000)):
                print(f"no message for {args.timeout} s", file=sys.stderr)
                return 1
            topic_b, payload = sock.recv_multipart()
            msg = msgpack.unpackb(payload)
            kind = topic_b.decode().rsplit("/", 1)[-1]
            if kind == "pose":
                poses += 1
                people = (
                    ", ".join(
                        f"#{p['track_id']} {p['state']} box={[round(v) for v in p['box']]}"
                        + (
                            ""
                            if p["transl"] is None
                            else f" transl={[round(v, 2) for v in p['transl']]}"
                        )
                        for p in msg["persons"]
                    )
                    or "nobody"
                )
                print(
                    f"[{msg['stream_id']}] frame {msg['frame_index']} "
                    f"t={msg['timestamp']:.3f}s: {people}",
                    flush=True,
                )
            elif kind == "event":
                print(f"[{msg['stream_id']}] EVENT {msg['kind']}: {msg['message']}", flush=True)
            elif kind == "metrics":
                fps = {k: v.get("frames_out") for k, v in msg["stages"].items()}
                print(
                    f"[{msg['stream_id']}] metrics {msg['elapsed_s']:.1f}s frames_out={fps}",
                    flush=True,
                )
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(0)
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
