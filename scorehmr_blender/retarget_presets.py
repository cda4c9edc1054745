# SPDX-License-Identifier: GPL-3.0-or-later
"""Bone mappings from the SMPL armature onto character rigs: presets, automatic
mapping by bone names, and the mapping JSON format.  Plain Python (no bpy, no
numpy), so the add-on can list presets without loading anything heavy.

A mapping is a dict {SMPL bone name: target bone name}; every target bone is
used at most once.  SMPL's ``left_hand``/``right_hand`` bones (the leaf past
the wrist) have no counterpart on the usual rigs and stay unmapped.
"""

import json
import re

# SMPL's bones (the joints, in SMPL order; convert.JOINT_NAMES without numpy).
SMPL_BONES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee",
    "spine2", "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot",
    "neck", "left_collar", "right_collar", "head", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
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


def _mirrored(left_pairs, to_right):
    """Left-side pairs plus their right-side copies (``to_right`` renames a target)."""
    pairs = dict(left_pairs)
    pairs.update({"right_" + s[5:]: to_right(t) for s, t in left_pairs.items() if s.startswith("left_")})
    return pairs


_LIMBS = ("left_collar", "left_shoulder", "left_elbow", "left_wrist",
          "left_hip", "left_knee", "left_ankle", "left_foot")

# Rigify's deform bones (the generated rig's DEF- layer, named after the human
# metarig): spine = hips, .001-.003 = torso to chest, .004/.005 = neck, .006 = head.
RIGIFY = _mirrored({
    "pelvis": "DEF-spine", "spine1": "DEF-spine.001", "spine2": "DEF-spine.002", "spine3": "DEF-spine.003",
    "neck": "DEF-spine.004", "head": "DEF-spine.006",
    **dict(zip(_LIMBS, ("DEF-shoulder.L", "DEF-upper_arm.L", "DEF-forearm.L", "DEF-hand.L",
                        "DEF-thigh.L", "DEF-shin.L", "DEF-foot.L", "DEF-toe.L"))),
}, lambda t: t[:-2] + ".R")

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

PRESETS = {"rigify": RIGIFY, "mixamo": MIXAMO, "ue5": UE5}
PRESET_LABELS = {"rigify": "Rigify (DEF bones)", "mixamo": "Mixamo", "ue5": "Unreal Mannequin (UE5)"}

# A preset counts as detected when this share of its bones resolve on the rig.
DETECT_SHARE = 0.8


class MappingError(ValueError):
    """A mapping or mapping file that cannot be used; the message is for the user."""


def _bare(name):
    """A bone name without its namespace ("mixamorig1:Hips" -> "hips"), lower case."""
    return name.rsplit(":", 1)[-1].lower()


def resolve(preset_pairs, bone_names):
    """The pairs of a preset whose target exists among ``bone_names``: exact names
    first, else the same name with any namespace and in any case."""
    names = list(bone_names)
    exact = set(names)
    bare = {}
    for name in names:
        bare.setdefault(_bare(name), name)
    found = {}
    for source, target in preset_pairs.items():
        if target in exact:
            found[source] = target
        elif _bare(target) in bare:
            found[source] = bare[_bare(target)]
    return found


def detect_preset(bone_names):
    """The preset key whose bones the rig has (most of), or None."""
    names = list(bone_names)
    best, best_share = None, DETECT_SHARE
    for key, pairs in PRESETS.items():
        share = len(resolve(pairs, names)) / len(pairs)
        if share >= best_share:
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


def name_words(name):
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


def classify(name):
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


def name_mapping(bones):
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


def auto_mapping(bones):
    """(mapping, preset key or None): a detected preset's mapping, else name_mapping()."""
    names = [name for name, _ in bones]
    preset = detect_preset(names)
    if preset is not None:
        return resolve(PRESETS[preset], names), preset
    return name_mapping(bones), None


def _depth(name, parent):
    d = 0
    while parent.get(name) is not None:
        name, d = parent[name], d + 1
    return d


def _ancestors(name, parent):
    """``name`` and its ancestors, nearest first."""
    chain = [name]
    while parent.get(chain[-1]) is not None:
        chain.append(parent[chain[-1]])
    return chain


def _common_ancestor(best, part, parent):
    """The nearest common ancestor of the left and right bones of ``part``."""
    if (part, "L") not in best or (part, "R") not in best:
        return None
    left = _ancestors(best[part, "L"], parent)[1:]
    right = set(_ancestors(best[part, "R"], parent)[1:])
    return next((a for a in left if a in right), None)


def _chain_between(top, bottom, parent):
    """Bones from just below ``top`` down to ``bottom`` (inclusive), root first;
    empty unless ``top`` is an ancestor of ``bottom``."""
    chain = _ancestors(bottom, parent)
    if top not in chain[1:]:
        return []
    return chain[:chain.index(top)][::-1]


def _spread_spine(spine):
    """SMPL's three spine bones over a chain of any length: ends to ends."""
    n = len(spine)
    if n == 0:
        return {}
    if n == 1:
        return {"spine3": spine[0]}  # the chest, where the clavicles hang
    if n == 2:
        return {"spine1": spine[0], "spine3": spine[1]}
    return {"spine1": spine[0], "spine2": spine[n // 2], "spine3": spine[-1]}


def _continuation(chest, parent, arm_ancestors):
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


def _unique_targets(mapping):
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


def mapping_to_json(mapping, source="SMPL"):
    """The JSON text of a mapping (pairs in the given order)."""
    check(mapping)
    document = {"format": FORMAT, "version": 1, "source": source,
                "pairs": [{"source": s, "target": t} for s, t in mapping.items()]}
    return json.dumps(document, indent=2) + "\n"


def mapping_from_json(text):
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


def check(mapping):
    """``mapping`` if it uses each target bone once and has no empty names; else MappingError."""
    seen = {}
    for source, target in mapping.items():
        if not source or not target:
            raise MappingError("a pair has an empty bone name")
        if target in seen:
            raise MappingError(f"target bone '{target}' is mapped from both '{seen[target]}' and '{source}'")
        seen[target] = source
    return mapping
