"""Foot skating of the five test characters retargeted from the example shot (slide and drift while
SMPL's feet are in contact).

    .venv/bin/python scripts/retarget_skating.py [before] [in_place]

"before" turns the foot pinning off (the bake as it was)."""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np, bpy
sys.path.insert(0, ".")
from tests import blender_scene, retarget_rigs
from scorehmr_blender import retarget
import scorehmr_blender
before = "before" in sys.argv
in_place = "in_place" in sys.argv
if before:
    retarget._pin_feet = lambda *a, **k: None
retarget_rigs.enable_rigify()
bpy.ops.wm.read_factory_settings(use_empty=True)
scorehmr_blender.register()
scene = blender_scene.fresh_scene(24, 96)
retarget_rigs.enable_rigify()
smpl = retarget_rigs.import_smpl(retarget_rigs.shot_result(str(Path(tempfile.mkdtemp()) / "Shot.npz")))
F = np.arange(1, 97)
contacts = retarget_rigs.smpl_contacts(smpl, F)
print("contact frames per joint", contacts.sum(0))
_, sf = retarget.sample_pose(smpl, list(retarget.FOOT_JOINTS), F)
print("SMPL: slide mean %.2f max %.2f mm/frame, drift %.1f mm" % tuple(1000 * np.array(retarget_rigs.foot_skating(sf, contacts))))
for name, (rig, deform) in retarget_rigs.five_rigs(tempfile.mkdtemp()).items():
    t = time.perf_counter()
    retarget.retarget(smpl, rig, in_place=in_place)
    t = time.perf_counter() - t
    _, feet = retarget.sample_pose(rig, [deform[j] for j in retarget.FOOT_JOINTS], F)
    mean, worst, drift = retarget_rigs.foot_skating(feet, contacts)
    floor = min((rig.matrix_world @ rig.data.bones[deform[j]].head_local)[2] for j in retarget.FOOT_JOINTS)
    low = feet[..., 2].min(axis=1) - floor
    print(f"{name:17s} {'in place ' if in_place else ''}{'before' if before else 'after '}: slide mean {mean*1000:.2f} max {worst*1000:.2f} mm/frame, "
          f"drift {drift*1000:.1f} mm, lowest foot over floor min {low.min()*1000:.1f} max-in-contact {low[contacts.any(1)].max()*1000:.1f} mm, bake {t:.1f} s", flush=True)
