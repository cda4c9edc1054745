# SPDX-License-Identifier: GPL-3.0-or-later
"""Bone mappings from the SMPL armature onto character rigs: presets, automatic
mapping by the skeleton's shape (topology and bone lengths) or by bone names, and
the mapping JSON format.  Plain Python (no bpy, no numpy), so the add-on can list
presets without loading anything heavy (the contract's ``layout`` is plain Python too).

A mapping is a dict {SMPL bone name: target bone name}; every target bone is
used at most once.  SMPL's ``left_hand``/``right_hand`` bones (the leaf past
the wrist) have no counterpart on the usual rigs and stay unmapped.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

from backend.contract.layout import SMPL_JOINT_NAMES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    Point = Sequence[float]  # a 3D point or direction
    Target = str | tuple[str, ...]  # a preset's target bone, or candidates in order

# SMPL's bones: the joints, in SMPL order (the contract's layout, the names the engine writes).
SMPL_BONES = SMPL_JOINT_NAMES
# SMPL bone -> (body part, side) for name matching; spine1..3 are handled as a chain.
SMPL_PARTS = {
    "pelvis": ("pelvis", None), "neck": ("neck", None), "head": ("head", None),
    "left_collar": ("clavicle", "L"), "left_shoulder": ("upperarm", "L"),
    "left_elbow": ("forearm", "L"), "left_wrist": ("hand", "L"),
    "left_hip": ("thigh", "L"), "left_knee": ("shin", "L"),
    "left_ankle": ("foot", "L"), "left_foot": ("toe", "L"),
}
SMPL_PARTS.update({"right_" + name[5:]: (part, "R") for name, (part, side) in SMPL_PARTS.items() if side})
SMPL_SPINE = ("spine1", "spine2", "spine3")


def _mirrored(left_pairs: dict[str, Target], to_right: Callable[[Target], Target]) -> dict[str, Target]:
    """Left-side pairs plus their right-side copies (``to_right`` renames a target)."""
    pairs = dict(left_pairs)
    pairs.update({"right_" + s[5:]: to_right(t) for s, t in left_pairs.items() if s.startswith("left_")})
    return pairs


_LIMBS = ("left_collar", "left_shoulder", "left_elbow", "left_wrist",
          "left_hip", "left_knee", "left_ankle", "left_foot")

# Rigify's generated rig, driven through its controls: the DEF and ORG bones follow
# them by constraints, so keys on those would be overridden.  The limbs take the FK
# controls (retarget() sets their IK/FK switches to FK, RIGIFY_FK_SWITCHES).  The
# spine turns about the torso's pivot at the waist: the torso takes the lower back
# (spine1) and the root motion (MOTION_ROOTS), the hips control the pelvis, the FK
# spine controls above the pivot the upper spine.  A tuple lists names to try in turn
# (older Rigify versions have one shared toe control).
RIGIFY = _mirrored({
    "pelvis": "hips", "spine1": "torso", "spine2": "spine_fk.002", "spine3": "spine_fk.003",
    "neck": "neck", "head": "head",
    **dict(zip(_LIMBS, ("shoulder.L", "upper_arm_fk.L", "forearm_fk.L", "hand_fk.L",
                        "thigh_fk.L", "shin_fk.L", "foot_fk.L", ("toe_fk.L", "toe.L")))),
}, lambda t: tuple(n[:-2] + ".R" for n in t) if isinstance(t, tuple) else t[:-2] + ".R")
# Rigify limb property bones: {switch bone: the FK control that must be followed}.
RIGIFY_FK_SWITCHES = {f"{limb}_parent.{side}": f"{limb}_fk.{side}" for limb in ("upper_arm", "thigh") for side in "LR"}
RIGIFY_SWITCH = ("IK_FK", 1.0)  # 1 = FK
# {pelvis bone: the bone whose location carries the root motion instead} (a control that
# does not carry the whole body; otherwise the pelvis bone itself).
MOTION_ROOTS = {"hips": "torso"}

# Rigify's human metarig (before generation): spine = hips, .001-.003 = torso to chest,
# .004/.005 = neck, .006 = head; face bones hang from the head and are not mapped.
RIGIFY_METARIG = _mirrored({
    "pelvis": "spine", "spine1": "spine.001", "spine2": "spine.002", "spine3": "spine.003",
    "neck": "spine.004", "head": "spine.006",
    **dict(zip(_LIMBS, ("shoulder.L", "upper_arm.L", "forearm.L", "hand.L",
                        "thigh.L", "shin.L", "foot.L", "toe.L"))),
}, lambda t: t[:-2] + ".R")

# A rig with only Rigify's deform bones (exported for a game engine: no constraints).
RIGIFY_DEFORM = {s: "DEF-" + t for s, t in RIGIFY_METARIG.items()}

# Mixamo: names carry a namespace ("mixamorig:", "mixamorig1:", ...) that resolve() ignores.
MIXAMO = _mirrored({
    "pelvis": "mixamorig:Hips", "spine1": "mixamorig:Spine", "spine2": "mixamorig:Spine1",
    "spine3": "mixamorig:Spine2", "neck": "mixamorig:Neck", "head": "mixamorig:Head",
    **dict(zip(_LIMBS, ("mixamorig:LeftShoulder", "mixamorig:LeftArm", "mixamorig:LeftForeArm",
                        "mixamorig:LeftHand", "mixamorig:LeftUpLeg", "mixamorig:LeftLeg",
                        "mixamorig:LeftFoot", "mixamorig:LeftToeBase"))),
}, lambda t: t.replace("Left", "Right"))

# Unreal Engine 5 mannequin: five spine bones; the clavicles hang from spine_05.
UE5 = _mirrored({
    "pelvis": "pelvis", "spine1": "spine_01", "spine2": "spine_03", "spine3": "spine_05",
    "neck": "neck_01", "head": "head",
    **dict(zip(_LIMBS, ("clavicle_l", "upperarm_l", "lowerarm_l", "hand_l",
                        "thigh_l", "calf_l", "foot_l", "ball_l"))),
}, lambda t: t[:-2] + "_r")

# Detection tries them in this order (a generated Rigify rig has the deform and the
# control names: the controls win).
PRESETS = {"rigify": RIGIFY, "rigify_metarig": RIGIFY_METARIG, "rigify_deform": RIGIFY_DEFORM,
           "mixamo": MIXAMO, "ue5": UE5}
PRESET_LABELS = {"rigify": "Rigify (generated rig, FK controls)", "rigify_metarig": "Rigify metarig",
                 "rigify_deform": "Rigify deform bones only (DEF-)", "mixamo": "Mixamo",
                 "ue5": "Unreal Mannequin (UE5)"}

# A preset counts as detected when this share of its bones resolve on the rig.
DETECT_SHARE = 0.8


class MappingError(ValueError):
    """A mapping or mapping file that cannot be used; the message is for the user."""


def _bare(name: str) -> str:
    """A bone name without its namespace ("mixamorig1:Hips" -> "hips"), lower case."""
    return name.rsplit(":", 1)[-1].lower()


def resolve(preset_pairs: Mapping[str, Target], bone_names: Iterable[str]) -> dict[str, str]:
    """The pairs of a preset whose target exists among ``bone_names``: exact names
    first, else the same name with any namespace and in any case."""
    names = list(bone_names)
    exact = set(names)
    bare = {}
    for name in names:
        bare.setdefault(_bare(name), name)
    found = {}
    for source, targets in preset_pairs.items():
        for target in (targets if isinstance(targets, tuple) else (targets,)):
            if target in exact or _bare(target) in bare:
                found[source] = target if target in exact else bare[_bare(target)]
                break
    return found


def motion_root(pelvis_bone: str, bone_names: Iterable[str]) -> str:
    """The bone whose location carries the root motion when SMPL's pelvis maps to ``pelvis_bone``."""
    root = MOTION_ROOTS.get(pelvis_bone)
    return root if root is not None and root in set(bone_names) else pelvis_bone


def fk_switches(mapping: dict[str, str]) -> list[tuple]:
    """[(bone, property, value)]: Rigify IK/FK switches to set so the mapped FK controls lead."""
    used = set(mapping.values())
    return [(bone, *RIGIFY_SWITCH) for bone, control in RIGIFY_FK_SWITCHES.items() if control in used]


def detect_preset(bone_names: Iterable[str]) -> str | None:
    """The preset key whose bones the rig has (most of), or None."""
    names = list(bone_names)
    best, best_share = None, DETECT_SHARE
    for key, pairs in PRESETS.items():  # the first of equal shares wins
        share = len(resolve(pairs, names)) / len(pairs)
        if share > best_share or (best is None and share == best_share):
            best, best_share = key, share
    return best


# -- automatic mapping by names ----------------------------------------------------------

# Words that mark a helper, control or finger bone, never a body part of the mapping.
_EXCLUDE = {
    "ik", "fk", "mch", "org", "ctrl", "ctl", "con", "tweak", "pole", "target", "tgt", "twist", "roll",
    "end", "top", "nub", "helper", "corrective", "socket", "prop", "parent", "master", "control",
    "thumb", "index", "middle", "ring", "pinky", "little", "finger", "fingers", "metacarpal", "palm",
    "breast", "eye", "jaw", "weapon", "gun", "attach",
}
# Two words that name one part ("Up Leg", "fore_arm").
_COMPOUNDS = {
    ("up", "leg"): "upleg", ("upper", "leg"): "upperleg", ("lower", "leg"): "lowerleg",
    ("upper", "arm"): "upperarm", ("up", "arm"): "upperarm", ("fore", "arm"): "forearm",
    ("lower", "arm"): "lowerarm", ("toe", "base"): "toebase", ("upper", "chest"): "upperchest",
    ("collar", "bone"): "collarbone",
}
# (part, words, needs a side): the first rule a bone's words meet decides its part.
_PART_RULES = (
    ("toe", {"toe", "toes", "toebase", "ball"}, True),
    ("foot", {"foot", "ankle"}, True),
    ("thigh", {"thigh", "upleg", "upperleg", "hip"}, True),
    ("shin", {"shin", "calf", "leg", "lowerleg", "knee"}, True),
    ("hand", {"hand", "wrist"}, True),
    ("forearm", {"forearm", "lowerarm", "elbow"}, True),
    ("upperarm", {"upperarm", "arm"}, True),
    ("clavicle", {"clavicle", "collar", "collarbone", "shoulder"}, True),
    ("pelvis", {"pelvis", "hips", "hip"}, False),
    ("neck", {"neck"}, False),
    ("head", {"head"}, False),
    ("spine", {"spine", "chest", "upperchest", "torso", "abdomen", "waist"}, False),
)
_SIDES = {"l": "L", "left": "L", "r": "R", "right": "R"}
_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def name_words(name: str) -> list[str]:
    """The lower-case words of a bone name: namespace dropped, split at separators,
    camelCase and digits, known two-word parts joined ("LeftUpLeg" -> left, upleg)."""
    words = [w.lower() for w in _WORD.findall(name.rsplit(":", 1)[-1])]
    joined = []
    for word in words:
        if joined and (joined[-1], word) in _COMPOUNDS:
            joined[-1] = _COMPOUNDS[joined[-1], word]
        else:
            joined.append(word)
    return joined


def classify(name: str) -> tuple[str | None, str | None]:
    """(part, side) a bone name stands for, side "L"/"R"/None; part None when the
    name is a helper/control bone or names no mapped body part."""
    words = name_words(name)
    if _EXCLUDE.intersection(words):
        return None, None
    sides = {_SIDES[w] for w in words if w in _SIDES}
    if len(sides) > 1:  # both sides named: ambiguous
        return None, None
    side = sides.pop() if sides else None
    for part, keys, sided in _PART_RULES:
        if keys.intersection(words) and sided == (side is not None):
            return part, side
    return None, side


def name_mapping(bones: Sequence[tuple[str, str | None]]) -> dict[str, str]:
    """Map SMPL bones by the target's bone names and hierarchy.

    bones: [(name, parent name or None)] of the candidate bones (the deform bones).
    Side parts come from names (fewest ancestors wins: "DEF-thigh.L" over its
    twist segment "DEF-thigh.L.001").  The spine is the chain from the pelvis to
    the chest, the bone both clavicles (or upper arms) hang from; pelvis and chest
    are found from the legs and arms when the names do not say.  Neck and head
    come from names, else from the chain that continues the chest."""
    parent = dict(bones)
    depth = {name: _depth(name, parent) for name in parent}
    by_part = {}
    for name in parent:
        part, side = classify(name)
        if part is not None:
            by_part.setdefault((part, side), []).append(name)
    best = {key: min(names, key=lambda n: (depth[n], len(n), n)) for key, names in by_part.items()}

    mapping = {smpl: best[key] for smpl, key in SMPL_PARTS.items() if key in best}
    pelvis = best.get(("pelvis", None)) or _common_ancestor(best, "thigh", parent)
    chest = _common_ancestor(best, "clavicle", parent) or _common_ancestor(best, "upperarm", parent)
    if pelvis is not None:
        mapping["pelvis"] = pelvis

    spine = _chain_between(pelvis, chest, parent) if pelvis and chest else []
    if not spine:
        spine = sorted(by_part.get(("spine", None), []), key=lambda n: (depth[n], n))
    mapping.update(_spread_spine(spine))

    if chest is not None and ("neck" not in mapping or "head" not in mapping):
        arms = {a for side in "LR" for key in (("clavicle", side), ("upperarm", side)) if key in best
                for a in _ancestors(best[key], parent)}
        chain = _continuation(chest, parent, arms)
        if chain and "neck" not in mapping:
            mapping["neck"] = chain[0]
        if len(chain) > 1 and "head" not in mapping:
            mapping["head"] = chain[-1]
    return _unique_targets(mapping)


def auto_mapping(bones: Sequence[tuple[str, str | None, Point, Point]]) -> tuple[dict[str, str], str | None]:
    """(mapping, preset key or None): a detected preset's mapping, else skeleton_mapping()
    (the rest pose's shape), else name_mapping().

    bones: [(name, parent or None, head (x, y, z), tail (x, y, z))], world rest, Z up."""
    names = [name for name, *_ in bones]
    preset = detect_preset(names)
    if preset is not None:
        return resolve(PRESETS[preset], names), preset
    return skeleton_mapping(bones) or name_mapping([(name, parent) for name, parent, *_ in bones]), None


# -- automatic mapping by the skeleton's shape ---------------------------------------------------

# Shares of the rig's height: legs reach below LOW, arms reach out further than WIDE
# from the pelvis, a first arm bone shorter than COLLAR is a clavicle, the head spans HEAD.
LOW, WIDE, COLLAR, HEAD = 0.25, 0.2, 0.11, 0.93


def _sub(a: Point, b: Point) -> tuple[float, ...]:
    return tuple(x - y for x, y in zip(a, b))


def _norm(v: Point) -> float:
    return sum(x * x for x in v) ** 0.5


class _Skeleton:
    """Rest geometry and topology of a rig: bones {name: (parent, head, tail)}."""

    def __init__(self, bones: Sequence[tuple[str, str | None, Point, Point]]) -> None:
        self.parent = {n: p for n, p, _h, _t in bones}
        self.head = {n: tuple(h) for n, _p, h, _t in bones}
        self.tail = {n: tuple(t) for n, _p, _h, t in bones}
        self.children = {n: [] for n in self.parent}
        for name, parent in self.parent.items():
            if parent in self.children:
                self.children[parent].append(name)
        zs = [p[2] for n in self.parent for p in (self.head[n], self.tail[n])]
        self.floor, self.height = min(zs), max(zs) - min(zs)

    def length(self, name: str) -> float:
        return _norm(_sub(self.tail[name], self.head[name]))

    def subtree(self, name: str) -> list[str]:
        todo, out = [name], []
        while todo:
            out.append(todo.pop())
            todo.extend(self.children[out[-1]])
        return out

    def points(self, name: str) -> list[tuple[float, ...]]:
        return [p for n in self.subtree(name) for p in (self.head[n], self.tail[n])]

    def longest(self, name: str) -> float:
        """Length of the longest bone path from ``name`` down."""
        return self.length(name) + max((self.longest(c) for c in self.children[name]), default=0.0)

    def connected(self, name: str) -> list[str]:
        return [c for c in self.children[name] if _norm(_sub(self.head[c], self.tail[name])) < 1e-3 * self.height]

    def path(self, name: str, key: Callable[[str], float] | None = None) -> list[str]:
        """Bones from ``name`` down the chain: connected children first, then the best by
        ``key`` (default: the longest path below)."""
        key = key or self.longest
        chain = [name]
        while self.children[chain[-1]]:
            options = self.connected(chain[-1]) or self.children[chain[-1]]
            chain.append(max(options, key=lambda c: (key(c), c)))
        return chain


def skeleton_mapping(bones: Sequence[tuple[str, str | None, Point, Point]]) -> dict[str, str]:
    """Map SMPL bones by the rest pose's topology and bone lengths, names unread.

    bones: [(name, parent or None, head, tail)] in world space, Z up, standing.  The
    pelvis is the deepest bone with two subtrees reaching the floor (the legs), the
    chest the deepest with two reaching out sideways (the arms); the spine runs
    between them, the neck and head continue the chest up to the top.  In a leg the
    ankle is where the chain turns forward and the knee the joint half-way along;
    in an arm a bone shorter than COLLAR x height first is the clavicle, the hand is
    the first bone with three or more children (else at 3/4 of the arm) and the
    elbow half-way to it (twist segments lie at quarters).  Left is on the left of
    the feet's forward direction.  Returns {} when no legs and arms are found."""
    sk = _Skeleton(bones)
    if sk.height <= 0:
        return {}
    low = {n: min(p[2] for p in sk.points(n)) for n in sk.parent}
    legs_of = {n: [c for c in sk.children[n] if low[c] < sk.floor + LOW * sk.height] for n in sk.parent}
    top = sk.floor + (1.0 - LOW) * sk.height  # the hips carry the head too (a foot has two low children)
    hips = [n for n in sk.parent if len(legs_of[n]) >= 2 and max(p[2] for p in sk.points(n)) > top]
    if not hips:
        return {}
    pelvis = max(hips, key=lambda n: (_depth(n, sk.parent), n))
    origin = sk.head[pelvis]

    def outward(n):
        """The horizontal offset from the pelvis of ``n``'s subtree point farthest out."""
        return max((_sub(p, origin)[:2] for p in sk.points(n)), key=_norm)

    def reach(n):
        return _norm(outward(n))

    def arm_pair(n):
        """The two children of ``n`` reaching furthest out on opposite sides, or None."""
        out = [c for c in sk.children[n] if low[c] > sk.floor + LOW * sk.height and reach(c) > WIDE * sk.height]
        pairs = [(a, b) for a in out for b in out if a < b
                 and outward(a)[0] * outward(b)[0] + outward(a)[1] * outward(b)[1] < 0]
        return max(pairs, key=lambda ab: reach(ab[0]) + reach(ab[1]), default=None)

    arms_of = {n: arm_pair(n) for n in sk.subtree(pelvis)}
    chests = [n for n, pair in arms_of.items() if pair]
    if not chests:
        return {}
    chest = max(chests, key=lambda n: (_depth(n, sk.parent), n))

    legs = [_leg(sk, sk.path(c)) for c in sorted(legs_of[pelvis], key=lambda c: low[c])[:2]]
    arms = [_arm(sk, sk.path(c, reach)) for c in arms_of[chest]]
    forward = _forward(sk, legs)
    left = (-forward[1], forward[0], 0.0)  # up x forward

    def side_of(limb):
        point = sk.head[next(iter(limb.values()))]
        return "left" if sum(a * b for a, b in zip(_sub(point, origin), left)) > 0 else "right"

    mapping = {"pelvis": pelvis}
    for limb in (*legs, *arms):
        mapping.update({f"{side_of(limb)}_{part}": bone for part, bone in limb.items()})
    mapping.update(_spread_spine(_chain_between(pelvis, chest, sk.parent)))
    mapping.update(_neck_and_head(sk, chest, {b for limb in arms for b in limb.values()} | set(arms_of[chest])))
    return _unique_targets(mapping)


def _leg(sk: _Skeleton, chain: list[str]) -> dict[str, str]:
    """{part: bone} of one leg chain (hip first): hip, knee, ankle, foot (toe)."""
    ankle = next((i for i in range(1, len(chain))
                  if abs(_sub(sk.tail[chain[i]], sk.head[chain[i]])[2])
                  < _norm(_sub(sk.tail[chain[i]], sk.head[chain[i]])[:2])), None)
    leg = {"hip": chain[0]}
    if ankle is None:
        return leg
    leg["knee"] = _halfway(sk, chain[:ankle], sk.head[chain[ankle]])
    leg["ankle"] = chain[ankle]
    if ankle + 1 < len(chain):
        leg["foot"] = chain[ankle + 1]
    return leg


def _arm(sk: _Skeleton, chain: list[str]) -> dict[str, str]:
    """{part: bone} of one arm chain (from the chest's child): collar, shoulder, elbow, wrist."""
    arm = {}
    if len(chain) > 3 and sk.length(chain[0]) < COLLAR * sk.height:
        arm["collar"], chain = chain[0], chain[1:]
    arm["shoulder"] = chain[0]
    hand = next((i for i in range(1, len(chain)) if len(sk.children[chain[i]]) >= 3), None)
    if hand is None:  # no fingers to tell: the hand starts about 3/4 along
        total = sum(sk.length(b) for b in chain)
        along = [sum(sk.length(b) for b in chain[:i]) / total for i in range(len(chain))]
        hand = min(range(2, len(chain)), key=lambda i: abs(along[i] - 0.75), default=None)
    if hand is None:
        return arm
    arm["elbow"] = _halfway(sk, chain[:hand], sk.head[chain[hand]])
    arm["wrist"] = chain[hand]
    return arm


def _halfway(sk: _Skeleton, chain: list[str], end: Point) -> str:
    """The bone of ``chain`` (after the first) starting nearest half-way from its head to ``end``."""
    start = sk.head[chain[0]]
    half = _norm(_sub(end, start)) / 2
    return min(chain[1:] or chain[:1], key=lambda b: abs(_norm(_sub(sk.head[b], start)) - half))


def _forward(sk: _Skeleton, legs: Iterable[dict[str, str]]) -> tuple[float, float]:
    """Unit horizontal forward direction from the feet (ankle to toe), else -Y (Blender's)."""
    total = [0.0, 0.0]
    for leg in legs:
        if "ankle" in leg:
            d = _sub(sk.tail[leg["ankle"]], sk.head[leg["ankle"]])
            total = [total[0] + d[0], total[1] + d[1]]
    n = _norm(total)
    return (total[0] / n, total[1] / n) if n > 1e-9 else (0.0, -1.0)


def _neck_and_head(sk: _Skeleton, chest: str, arm_bones: set[str]) -> dict[str, str]:
    """{neck, head}: the chain from the chest up to the top; the head is the bone
    spanning HEAD of the chain's height above the floor."""
    ups = [c for c in sk.children[chest] if c not in arm_bones]
    if not ups:
        return {}

    def top(n):
        return max(p[2] for p in sk.points(n))

    chain = sk.path(max(ups, key=lambda c: (top(c), c)), top)
    level = sk.floor + HEAD * (top(chain[0]) - sk.floor)
    head = min(chain, key=lambda b: 0.0 if sk.head[b][2] <= level <= sk.tail[b][2]
               else min(abs(sk.head[b][2] - level), abs(sk.tail[b][2] - level)))
    return {"head": head} if head == chain[0] else {"neck": chain[0], "head": head}


def _depth(name: str, parent: dict[str, str | None]) -> int:
    d = 0
    while parent.get(name) is not None:
        name, d = parent[name], d + 1
    return d


def _ancestors(name: str, parent: dict[str, str | None]) -> list[str]:
    """``name`` and its ancestors, nearest first."""
    chain = [name]
    while parent.get(chain[-1]) is not None:
        chain.append(parent[chain[-1]])
    return chain


def _common_ancestor(best: dict[tuple[str, str | None], str], part: str, parent: dict[str, str | None]) -> str | None:
    """The nearest common ancestor of the left and right bones of ``part``."""
    if (part, "L") not in best or (part, "R") not in best:
        return None
    left = _ancestors(best[part, "L"], parent)[1:]
    right = set(_ancestors(best[part, "R"], parent)[1:])
    return next((a for a in left if a in right), None)


def _chain_between(top: str, bottom: str, parent: dict[str, str | None]) -> list[str]:
    """Bones from just below ``top`` down to ``bottom`` (inclusive), root first;
    empty unless ``top`` is an ancestor of ``bottom``."""
    chain = _ancestors(bottom, parent)
    if top not in chain[1:]:
        return []
    return chain[:chain.index(top)][::-1]


def _spread_spine(spine: list[str]) -> dict[str, str]:
    """SMPL's three spine bones over a chain of any length: ends to ends."""
    n = len(spine)
    if n == 0:
        return {}
    if n == 1:
        return {"spine3": spine[0]}  # the chest, where the clavicles hang
    if n == 2:
        return {"spine1": spine[0], "spine3": spine[1]}
    return {"spine1": spine[0], "spine2": spine[n // 2], "spine3": spine[-1]}


def _continuation(chest: str, parent: dict[str, str | None], arm_ancestors: set[str]) -> list[str]:
    """The chain of unsided, non-helper bones continuing ``chest`` upwards (neck .. head)."""
    children = {}
    for name, p in parent.items():
        children.setdefault(p, []).append(name)

    def size(name):
        return 1 + sum(size(c) for c in children.get(name, ()))

    chain, current = [], chest
    while True:
        options = [c for c in children.get(current, ())
                   if c not in arm_ancestors and classify(c)[1] is None
                   and not _EXCLUDE.intersection(name_words(c))]
        if not options:
            return chain
        current = max(options, key=lambda c: (size(c), c))
        chain.append(current)


def _unique_targets(mapping: dict[str, str]) -> dict[str, str]:
    """Drop later pairs that reuse a target bone (SMPL order decides)."""
    order = ("pelvis", *SMPL_SPINE, "neck", "head", *SMPL_PARTS)
    used, unique = set(), {}
    for source in dict.fromkeys(order):
        target = mapping.get(source)
        if target is not None and target not in used:
            used.add(target)
            unique[source] = target
    return unique


# -- JSON ------------------------------------------------------------------------------------

FORMAT = "refine-motion-retarget-mapping"


def mapping_to_json(mapping: dict[str, str], source: str = "SMPL") -> str:
    """The JSON text of a mapping (pairs in the given order)."""
    check(mapping)
    document = {"format": FORMAT, "version": 1, "source": source,
                "pairs": [{"source": s, "target": t} for s, t in mapping.items()]}
    return json.dumps(document, indent=2) + "\n"


def mapping_from_json(text: str) -> dict[str, str]:
    """A mapping from JSON text written by mapping_to_json(); raises MappingError."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as ex:
        raise MappingError(f"not a JSON file ({ex})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise MappingError("not a Refine Motion bone mapping file")
    pairs = document.get("pairs")
    if not isinstance(pairs, list) or not all(
            isinstance(p, dict) and isinstance(p.get("source"), str) and isinstance(p.get("target"), str)
            for p in pairs):
        raise MappingError("'pairs' must be a list of {source, target} names")
    mapping = {}
    for pair in pairs:
        if pair["source"] in mapping:
            raise MappingError(f"source bone '{pair['source']}' is mapped twice")
        mapping[pair["source"]] = pair["target"]
    return check(mapping)


def check(mapping: dict[str, str]) -> dict[str, str]:
    """``mapping`` if it uses each target bone once and has no empty names; else MappingError."""
    seen = {}
    for source, target in mapping.items():
        if not source or not target:
            raise MappingError("a pair has an empty bone name")
        if target in seen:
            raise MappingError(f"target bone '{target}' is mapped from both '{seen[target]}' and '{source}'")
        seen[target] = source
    return mapping


# The limbs a character needs mapped to follow the motion: {limb: its SMPL bones}.
LIMBS = {"pelvis": ("pelvis",),
         **{f"{side} {limb}": tuple(f"{side}_{j}" for j in joints)
            for side in ("left", "right")
            for limb, joints in (("leg", ("hip", "knee", "ankle")), ("arm", ("shoulder", "elbow", "wrist")))}}


def unmapped_limbs(mapping: dict[str, str]) -> list[str]:
    """Names of the LIMBS that ``mapping`` leaves (partly) unmapped, in LIMBS order."""
    return [limb for limb, joints in LIMBS.items() if not all(j in mapping for j in joints)]
