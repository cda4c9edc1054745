"""Following one chosen person through a clip with a detector that sees one person at a time.

BlazePose reports one person per frame: in video mode the one it found first (it follows that
person's landmarks from frame to frame and looks again only after losing them).  Choosing a
person and keeping them when someone else walks in is done here, with two detectors:

``follow(rgb) -> Person | None``   stateful (BlazePose video mode): smooth, cheap, one person;
``find(rgb) -> Person | None``     stateless (BlazePose on a single image).

``find_people`` lists everyone in a frame by asking ``find`` repeatedly, greying out each person
found before asking again; people are ordered by the area of their box, largest first.

``PersonTracker(follow, find, track).step(rgb) -> Person | None`` per frame:
  * until the target is chosen, every frame is searched with ``find_people`` and the target is
    person ``track`` (0 = the largest) of the first frame holding more than ``track`` people;
    ``follow`` is then started on the target alone (the rest of the frame greyed out);
  * afterwards ``follow``'s person is the target while it stays where the target was (box
    overlap, or centre within half the box diagonal);
  * when ``follow`` loses the target or jumps to someone else, the frame is searched and the
    person nearest the target's last box is taken if their centre is within a gate of
    ``REACQUIRE_GATE`` box diagonals, widening by ``GATE_GROWTH`` diagonals per frame the target
    has been missing (a person who left and comes back elsewhere is picked up after a while);
    ``follow`` is restarted on them.  Otherwise the frame has no target (None).
The tracker has no appearance model: people are told apart by where they are.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from backend.detect.blazepose import Person

__all__ = ["MATCH_IOU", "MAX_PEOPLE", "PersonTracker", "find_people", "grow_box", "box_iou", "centre_distance",
           "grey_inside", "grey_outside"]

Detector = Callable[[np.ndarray], "Person | None"]

MATCH_IOU = 0.3          # follow's person is the target when its box overlaps the last one this much ...
MATCH_CENTRE = 0.5       # ... or its centre is within this many box diagonals of the last one
MAX_PEOPLE = 4           # find_people stops after this many
MASK_GROW = 0.2          # a found person is greyed out over their box grown by this fraction per side
FOCUS_GROW = 0.5         # follow is started on the target's box grown by this fraction per side
REACQUIRE_GATE = 1.0     # box diagonals: how far from its last box the target is looked for after a loss
GATE_GROWTH = 0.03       # box diagonals added to the gate per frame the target has been missing
GREY = 128


def grow_box(box: np.ndarray, fraction: float, size: tuple[int, int]) -> np.ndarray:
    """(4,) [x0, y0, x1, y1] grown by ``fraction`` of its width/height per side, clipped to size (W, H)."""
    pad = fraction * (box[2:] - box[:2])
    lo = np.maximum(box[:2] - pad, 0)
    hi = np.minimum(box[2:] + pad, size)
    return np.concatenate([lo, hi])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (4,) boxes (degenerate boxes count as 1 px wide)."""
    inter = np.prod(np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None))
    area = [np.prod(np.maximum(x[2:] - x[:2], 1.0)) for x in (a, b)]
    return float(inter / (area[0] + area[1] - inter))


def centre_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance between the centres of boxes ``a`` and ``b`` in diagonals of ``b``."""
    diag = max(float(np.hypot(*(b[2:] - b[:2]))), 1.0)
    return float(np.hypot(*((a[:2] + a[2:]) - (b[:2] + b[2:])) / 2)) / diag


def _area(box: np.ndarray) -> float:
    return float(np.prod(np.maximum(box[2:] - box[:2], 0.0)))


def _pixels(box: np.ndarray) -> tuple[slice, slice]:
    x0, y0 = np.floor(box[:2]).astype(int)
    x1, y1 = np.ceil(box[2:]).astype(int)
    return slice(max(y0, 0), max(y1, 0)), slice(max(x0, 0), max(x1, 0))


def grey_inside(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` with ``box`` greyed out."""
    out = rgb.copy()
    out[_pixels(box)] = GREY
    return out


def grey_outside(rgb: np.ndarray, box: np.ndarray) -> np.ndarray:
    """A copy of ``rgb`` grey everywhere but ``box``."""
    out = np.full_like(rgb, GREY)
    rows, cols = _pixels(box)
    out[rows, cols] = rgb[rows, cols]
    return out


def find_people(find: Detector, rgb: np.ndarray, max_people: int = MAX_PEOPLE) -> list[Person]:
    """Everyone ``find`` sees in ``rgb`` (up to ``max_people``), largest box first."""
    size = (rgb.shape[1], rgb.shape[0])
    people: list[Person] = []
    image = rgb
    while len(people) < max_people:
        person = find(image)
        # A person found again where one already was: greying did not hide them; stop.
        if person is None or any(box_iou(person.box, p.box) > 0.5 for p in people):
            break
        people.append(person)
        image = grey_inside(image, grow_box(person.box, MASK_GROW, size))
    return sorted(people, key=lambda p: -_area(p.box))


class PersonTracker:
    """Per-frame choice of the target person (see module docstring)."""

    def __init__(self, follow: Detector, find: Detector, track: int | None = None,
                 max_people: int = MAX_PEOPLE):
        if track is not None and not 0 <= int(track) < max_people:
            raise ValueError(f"track {track} is out of range: the tracker tells apart up to {max_people} people "
                             f"(track 0 to {max_people - 1})")
        self.follow, self.find = follow, find
        self.track = 0 if track is None else int(track)
        self.max_people = max_people
        self.box: np.ndarray | None = None   # the target's last box; None until chosen
        self.missing = 0                     # frames since the target was last seen
        self.most_people = 0                 # most people found in one frame by a search
        self.searches = 0                    # frames that needed a search (find_people)
        self.reacquired = 0                  # times the target was picked up again after a loss or a jump

    def step(self, rgb: np.ndarray) -> Person | None:
        """The target in this RGB frame, or None."""
        if self.box is None:
            return self._choose(rgb)
        person = self.follow(rgb)
        if person is not None and self._same(person.box, self.box):
            return self._seen(person)
        return self._search(rgb)

    @staticmethod
    def _same(box: np.ndarray, last: np.ndarray) -> bool:
        return box_iou(box, last) >= MATCH_IOU or centre_distance(box, last) <= MATCH_CENTRE

    def _people(self, rgb: np.ndarray) -> list[Person]:
        self.searches += 1
        people = find_people(self.find, rgb, self.max_people)
        self.most_people = max(self.most_people, len(people))
        return people

    def _choose(self, rgb: np.ndarray) -> Person | None:
        people = self._people(rgb)
        if len(people) <= self.track:
            return None
        return self._seen(self._start_following(rgb, people[self.track]))

    def _search(self, rgb: np.ndarray) -> Person | None:
        gate = REACQUIRE_GATE + GATE_GROWTH * self.missing
        people = self._people(rgb)
        near = [(centre_distance(p.box, self.box), i) for i, p in enumerate(people)]
        near = [(d, i) for d, i in near if d <= gate]
        if not near:
            self.missing += 1
            return None
        self.reacquired += 1
        return self._seen(self._start_following(rgb, people[min(near)[1]]))

    def _start_following(self, rgb: np.ndarray, target: Person) -> Person:
        """Points ``follow`` at ``target`` (it sees only the target's surroundings for a frame or two);
        returns ``follow``'s view of the target, or ``target`` itself if it does not find them."""
        focus = grey_outside(rgb, grow_box(target.box, FOCUS_GROW, (rgb.shape[1], rgb.shape[0])))
        # Two tries: the first may only end follow's hold on someone else.
        for _ in range(2):
            person = self.follow(focus)
            if person is not None and self._same(person.box, target.box):
                return person
        return target

    def _seen(self, person: Person) -> Person:
        self.box, self.missing = person.box, 0
        return person
