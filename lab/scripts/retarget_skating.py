"""Foot skating of the five test characters retargeted from the example shot: slide and drift of
their foot joints while SMPL's are in contact, and the lowest foot's height over their floor.

    .venv/bin/python lab/scripts/retarget_skating.py [before] [in_place]

"before" turns the foot pinning off (the bake as it was before it); "in_place" retargets In Place."""
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import scorehmr_blender  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from scorehmr_blender import retarget  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)
from tests.support import blender_scene, retarget_rigs  # noqa: E402 -- after the repository root is put on sys.path (run as a plain script)

FRAMES = np.arange(1, 97)


def main():
    before, in_place = "before" in sys.argv, "in_place" in sys.argv
    if before:
        retarget._pin_feet = lambda *args: None
    retarget_rigs.enable_rigify()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scorehmr_blender.register()
    blender_scene.fresh_scene(24, 96)
    retarget_rigs.enable_rigify()
    folder = Path(tempfile.mkdtemp())
    smpl = retarget_rigs.import_smpl(retarget_rigs.shot_result(folder / "Shot.npz"))
    contacts = retarget_rigs.smpl_contacts(smpl, FRAMES)
    _, smpl_feet = retarget.sample_pose(smpl, list(retarget.FOOT_JOINTS), FRAMES)
    mean, worst, drift = retarget_rigs.foot_skating(smpl_feet, contacts)
    print(f"SMPL: contact frames per foot joint {contacts.sum(0)}; slide {mean * 1000:.2f} mm/frame "
          f"(worst {worst * 1000:.1f}), drift {drift * 1000:.1f} mm")
    for name, (rig, deform) in retarget_rigs.five_rigs(folder).items():
        clock = time.perf_counter()
        retarget.retarget(smpl, rig, in_place=in_place)
        seconds = time.perf_counter() - clock
        _, feet = retarget.sample_pose(rig, [deform[j] for j in retarget.FOOT_JOINTS], FRAMES)
        mean, worst, drift = retarget_rigs.foot_skating(feet, contacts)
        floor = min((rig.matrix_world @ rig.data.bones[deform[j]].head_local)[2] for j in retarget.FOOT_JOINTS)
        low = feet[..., 2].min(axis=1) - floor
        print(f"{name:17s}{' in place' if in_place else ''} {'before' if before else 'after'}: slide "
              f"{mean * 1000:.2f} mm/frame (worst {worst * 1000:.1f}), drift {drift * 1000:.1f} mm, lowest foot "
              f"{low.min() * 1000:.1f} mm over its floor at its lowest, bake {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
