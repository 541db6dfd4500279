"""VMC protocol sender: SMPL poses -> OSC bundles over UDP (Unity humanoid bones).

One OSC bundle per frame: ``/VMC/Ext/Root/Pos "root" p q``, one ``/VMC/Ext/Bone/Pos name p q``
per bone (local position and rotation, quaternion ``(x, y, z, w)``), ``/VMC/Ext/OK loaded
calib_state calib_mode tracking`` and ``/VMC/Ext/T time``. All floats are float32 (``f``).

Frames (docs/conventions.md, docs/integrations.md):

- camera frame (x right, y down, z forward) -> right-handed y-up world by a 180 degree rotation
  about x, ``W = diag(1, -1, -1)``: a person upright facing the camera gets the identity root
  rotation, faces +z (towards the camera) with the subject's left at +x;
- right-handed -> Unity (left-handed, y up) by mirroring **x**: positions ``(-x, y, z)``,
  rotations ``M R M`` with ``M = diag(-1, 1, 1)``, i.e. quaternion ``(x, y, z, w) -> (x, -y, -z,
  w)``. Mirroring x (not z) keeps the facing direction: the avatar faces Unity's +z (the
  humanoid forward, towards a receiver camera placed in front of it) with its right at +x.

SMPL's rest is a T-pose with joint frames aligned to the body frame, as a normalised Unity/VRM
humanoid's, so bone local rotations are SMPL's local rotations (retargeting is the joint map
:func:`bone_table`; SMPL's ``left_hand``/``right_hand`` rotation is folded into ``Hand``).
"""

from __future__ import annotations

import argparse
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder

from engines.body import BodyModel
from engines.motion.retarget import smpl_fk
from engines.rotations import axis_angle_to_matrix, matrix_to_quaternion

__all__ = [
    "VMC_PORT",
    "Bone",
    "VMCSender",
    "bone_table",
    "build_bundle",
    "main",
    "smpl_to_unity_bones",
    "unity_quaternion",
]

VMC_PORT = 39539
CAM_TO_WORLD = np.diag([1.0, -1.0, -1.0])  # 180 degrees about x: camera (y down) -> y up
_MIRROR = np.array([-1.0, 1.0, 1.0])  # right-handed -> Unity left-handed: mirror x


@dataclass(frozen=True)
class Bone:
    """A Unity ``HumanBodyBones`` bone driven by SMPL joints: its rotation is ``rot``'s global
    rotation, its origin ``pos``'s position; ``parent`` is a bone name (None: the root)."""

    name: str
    rot: int
    pos: int
    parent: str | None


def bone_table(upper_chest: bool = True) -> tuple[Bone, ...]:
    """SMPL -> Unity bones. pelvis->Hips, spine1->Spine, spine2->Chest, spine3->UpperChest (or
    merged into Chest), neck->Neck, head->Head, hip->UpperLeg, knee->LowerLeg, ankle->Foot,
    foot->Toes, collar->Shoulder, shoulder->UpperArm, elbow->LowerArm, wrist (+hand)->Hand."""
    top = "UpperChest" if upper_chest else "Chest"
    bones = [
        Bone("Hips", 0, 0, None),
        Bone("Spine", 3, 3, "Hips"),
        Bone("Chest", 6 if upper_chest else 9, 6, "Spine"),
    ]
    if upper_chest:
        bones.append(Bone("UpperChest", 9, 9, "Chest"))
    bones += [Bone("Neck", 12, 12, top), Bone("Head", 15, 15, "Neck")]
    for side, o in (("Left", 0), ("Right", 1)):
        bones += [
            Bone(f"{side}UpperLeg", 1 + o, 1 + o, "Hips"),
            Bone(f"{side}LowerLeg", 4 + o, 4 + o, f"{side}UpperLeg"),
            Bone(f"{side}Foot", 7 + o, 7 + o, f"{side}LowerLeg"),
            Bone(f"{side}Toes", 10 + o, 10 + o, f"{side}Foot"),
            Bone(f"{side}Shoulder", 13 + o, 13 + o, top),
            Bone(f"{side}UpperArm", 16 + o, 16 + o, f"{side}Shoulder"),
            Bone(f"{side}LowerArm", 18 + o, 18 + o, f"{side}UpperArm"),
            Bone(f"{side}Hand", 22 + o, 20 + o, f"{side}LowerArm"),
        ]
    return tuple(bones)


def unity_quaternion(q_xyzw: np.ndarray) -> np.ndarray:  # [N, 4] -> [N, 4]
    """Right-handed y-up quaternion ``(x, y, z, w)`` -> Unity (x mirrored): ``(x, -y, -z, w)``."""
    q = np.array(q_xyzw, dtype=np.float64, copy=True)
    q[..., 1:3] *= -1
    return q


def smpl_to_unity_bones(
    global_orient: np.ndarray,  # [3] axis-angle, camera frame
    body_pose: np.ndarray,  # [69]
    rest_joints: np.ndarray,  # [24, 3] rest joints for the person's betas
    transl: np.ndarray,  # [3] camera frame
    upper_chest: bool = True,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Bone names, local positions ``[N, 3]`` and rotations ``[N, 4]`` (x, y, z, w) in Unity's
    frame, and the pelvis position in the right-handed y-up world ``[3]``. ``Hips`` is relative
    to the root (identity at the origin = the camera)."""
    go = np.asarray(global_orient, np.float64).reshape(-1)
    bp = np.asarray(body_pose, np.float64).reshape(-1)
    rj = np.asarray(rest_joints, np.float64)
    tr = np.asarray(transl, np.float64).reshape(-1)
    for name, v, n in (("global_orient", go, 3), ("body_pose", bp, 69), ("transl", tr, 3)):
        if v.shape != (n,):
            raise ValueError(f"{name} must have shape [{n}], got {v.shape}")
    if rj.shape != (24, 3):
        raise ValueError(f"rest_joints must have shape [24, 3], got {rj.shape}")
    aa = np.concatenate([go, bp]).reshape(24, 3)
    local = axis_angle_to_matrix(torch.from_numpy(aa)).numpy()  # [24, 3, 3]
    local[0] = CAM_TO_WORLD @ local[0]
    tw = CAM_TO_WORLD @ (rj[0] + tr) - rj[0]
    G, P = smpl_fk(local[None], rj, tw[None])
    G, P = G[0], P[0]
    bones = bone_table(upper_chest)
    idx = {b.name: b for b in bones}
    R = np.empty((len(bones), 3, 3))
    pos = np.empty((len(bones), 3))
    for k, b in enumerate(bones):
        if b.parent is None:
            R[k], pos[k] = G[b.rot], P[b.pos]
        else:
            p = idx[b.parent]
            Gp = G[p.rot]
            R[k] = Gp.T @ G[b.rot]
            pos[k] = Gp.T @ (P[b.pos] - P[p.pos])
    q = matrix_to_quaternion(torch.from_numpy(R)).numpy()  # (w, x, y, z)
    q_xyzw = np.concatenate([q[:, 1:], q[:, :1]], axis=1)
    return [b.name for b in bones], pos * _MIRROR, unity_quaternion(q_xyzw), P[0]


def _msg(address: str, args: Sequence[tuple[object, str]]):
    m = OscMessageBuilder(address)
    for v, t in args:
        m.add_arg(v, t)
    return m.build()


def build_bundle(
    names: Sequence[str],
    positions: np.ndarray,  # [N, 3] Unity local positions
    rotations: np.ndarray,  # [N, 4] Unity local quaternions (x, y, z, w)
    time_s: float,
    tracking: bool = True,
) -> bytes:
    """One VMC frame as an OSC bundle datagram. With no bones (``names`` empty) only
    ``OK 0 ...`` and ``T`` are sent, so receivers keep the last pose."""
    b = OscBundleBuilder(IMMEDIATELY)
    loaded = 1 if len(names) else 0
    if loaded:
        root = [("root", "s")] + [(0.0, "f")] * 6 + [(1.0, "f")]
        b.add_content(_msg("/VMC/Ext/Root/Pos", root))
        for n, p, q in zip(names, positions, rotations, strict=True):
            args = [(n, "s")] + [(float(v), "f") for v in (*p, *q)]
            b.add_content(_msg("/VMC/Ext/Bone/Pos", args))
    # v2.7 form: loaded, calibration state (3 = calibrated), calibration mode (0 = normal),
    # tracking status (1 = tracking)
    ok = [(loaded, "i"), (3, "i"), (0, "i"), (int(bool(tracking and loaded)), "i")]
    b.add_content(_msg("/VMC/Ext/OK", ok))
    b.add_content(_msg("/VMC/Ext/T", [(float(time_s), "f")]))
    return b.build().dgram


def _usable(p: Mapping) -> bool:
    return p.get("state") != "lost" and all(
        p.get(k) is not None for k in ("global_orient", "body_pose", "transl")
    )


class VMCSender:
    """Sends the poses of one track as VMC bundles to ``host:port`` (UDP).

    ``track``: follow this track id only; None: lock onto the lowest-id tracking person and keep
    it while it lives. ``anchor``: place Hips at the track's first pelvis position (x, z) at its
    standing height above the floor (rest pelvis height above the soles), so the avatar starts at
    the receiver's origin; otherwise Hips is the pelvis in the camera-origin world."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = VMC_PORT,
        *,
        track: int | None = None,
        upper_chest: bool = True,
        anchor: bool = True,
        body: BodyModel | None = None,
    ) -> None:
        if not 0 < int(port) < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        self.target = (host, int(port))
        self.track = track
        self.upper_chest = upper_chest
        self.anchor = anchor
        self.body = body if body is not None else BodyModel.default()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.current: int | None = None
        self._anchor: np.ndarray | None = None

    @classmethod
    def from_target(cls, target: str, **kw) -> VMCSender:
        """``"host:port"`` (e.g. ``127.0.0.1:39539``)."""
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"target must be 'host:port', got {target!r}")
        return cls(host, int(port), **kw)

    def select(self, persons: Sequence[Mapping]) -> Mapping | None:
        """The person to drive the avatar with (see class docstring)."""
        ok = [p for p in persons if _usable(p)]
        if self.track is not None:
            return next((p for p in ok if p.get("track_id") == self.track), None)
        cur = next((p for p in ok if p.get("track_id") == self.current), None)
        if cur is not None:
            return cur
        live = sorted((p for p in ok if p.get("state") == "tracking"), key=lambda p: p["track_id"])
        return live[0] if live else None

    def _rest(self, betas) -> tuple[np.ndarray, float]:
        nb = self.body.num_betas
        b = np.zeros(nb) if betas is None else np.asarray(betas, np.float64).reshape(-1)[:nb]
        bt = torch.as_tensor(np.pad(b, (0, nb - b.size)), dtype=torch.float32)[None]
        with torch.no_grad():
            rj = self.body.rest_joints(bt)[0].double().numpy()
            verts = self.body.v_template + torch.einsum("vcn,n->vc", self.body.shapedirs, bt[0])
        return rj, float(rj[0, 1] - verts[:, 1].min())

    def frame_bundle(self, payload: Mapping) -> bytes:
        """The bundle for one ``nbf.pose`` map (docs/schema.md)."""
        t = float(payload.get("timestamp", 0.0))
        person = self.select(payload.get("persons") or [])
        if person is None:
            return build_bundle([], np.zeros((0, 3)), np.zeros((0, 4)), t, False)
        rj, height = self._rest(person.get("betas"))
        names, pos, rot, pelvis = smpl_to_unity_bones(
            person["global_orient"], person["body_pose"], rj, person["transl"], self.upper_chest
        )
        if person["track_id"] != self.current:
            self.current, self._anchor = person["track_id"], None
        if self.anchor:
            if self._anchor is None:
                self._anchor = pelvis - np.array([0.0, height, 0.0])
            pos[0] = (pelvis - self._anchor) * _MIRROR
        return build_bundle(names, pos, rot, t, person.get("state") == "tracking")

    def send_frame(self, payload: Mapping) -> int:
        """Send one frame's bundle; returns the datagram size in bytes."""
        return self.sock.sendto(self.frame_bundle(payload), self.target)

    def close(self) -> None:
        self.sock.close()


def main(argv: list[str] | None = None) -> int:
    """Bridge: subscribe to the pipeline's ZeroMQ poses and send them to a VMC receiver."""
    import msgpack
    import zmq

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--connect", default="tcp://127.0.0.1:5555", help="ZeroMQ PUB endpoint")
    ap.add_argument("--target", default=f"127.0.0.1:{VMC_PORT}", help="VMC receiver host:port")
    ap.add_argument("--track", type=int, default=None, help="track id (default: first tracked)")
    ap.add_argument("--prefix", default="nbf")
    ap.add_argument("--stream", default="", help="stream id (default: all streams)")
    ap.add_argument("--no-upper-chest", action="store_true", help="merge UpperChest into Chest")
    ap.add_argument("--camera-origin", action="store_true", help="no anchoring: camera at origin")
    ap.add_argument("--count", type=int, default=0, help="stop after this many frames (0: never)")
    ap.add_argument("--timeout", type=float, default=0.0, help="exit 1 after this many s idle")
    args = ap.parse_args(argv)
    sender = VMCSender.from_target(
        args.target,
        track=args.track,
        upper_chest=not args.no_upper_chest,
        anchor=not args.camera_origin,
    )
    topic = f"{args.prefix}/{args.stream}/pose" if args.stream else f"{args.prefix}/"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 10)
    sub.setsockopt(zmq.SUBSCRIBE, topic.encode())
    sub.connect(args.connect)
    print(f"vmc: {args.connect} -> udp://{args.target}", file=sys.stderr, flush=True)
    sent = 0
    try:
        while args.count == 0 or sent < args.count:
            if args.timeout and not sub.poll(int(args.timeout * 1000)):
                print(f"vmc: no pose for {args.timeout} s", file=sys.stderr)
                return 1
            topic_b, payload = sub.recv_multipart()
            if not topic_b.endswith(b"/pose"):
                continue
            msg = msgpack.unpackb(payload)
            if isinstance(msg, dict) and msg.get("schema") == "nbf.pose":
                sender.send_frame(msg)
                sent += 1
    except KeyboardInterrupt:
        pass
    finally:
        sub.close(0)
        ctx.term()
        sender.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
