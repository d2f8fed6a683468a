"""Which recorded mouth to draw on each frame: a sequence decision, not a frame-by-frame one.

Each output frame wants a lip shape (`inference.mouth.MouthStream`) and is drawn on a
target frame with its own head pose. Any recorded frame of the avatar's bank can lend its
mouth; which one is chosen for the whole utterance at once by a Viterbi search over the
bank:

- **shape cost**: how far the reference's lips are from the wanted shape (in the model's
  coefficients, the opening weighted up), plus how far its head pose is from the target's
  (the paste aligns faces in the image plane only: a turned or nodding reference would put
  its chin beside the target's);
- **transition cost**: going on to the next recorded frame is free (the mouth then moves
  as the recording moved), and so is holding the same one in silence (in speech it costs
  `HOLD_COST_SPEECH`: a held mouth does not talk); any other change costs
  `SWITCH_COST` opening stds, because it is a cut from one moment of the recording to
  another (other teeth, light, stubble), which a viewer sees as a jump.

A file is decided over its whole length; a live stream decides each frame with the same
search over the shapes it already has beyond it (its look-ahead), starting from the
reference it drew last, a cut charged pro rata when fewer than `CUT_HORIZON` frames are in
sight (`ReferencePicker.__call__`). Where the chosen
references still cut, `Crossings` spreads the change over `CROSSING_SHARES` frames (the
paste morphs one mouth into the other along their optical flow, `inference.mouth`).
"""

from __future__ import annotations

import numpy as np

from synctalk2d.models.mouth import MouthModel

OPENING_WEIGHT = 2.5  # in matching references, the opening counts 2.5 times as much as width and the rest
# a head pose as far from the target's as the avatar's typical spread costs this many opening
# stds (more than proportionally beyond it): in silence (one mouth held over a moving head) and in speech
POSE_WEIGHT, POSE_WEIGHT_SPEECH = 0.7, 0.35
SWITCH_COST = 5.0  # opening stds: what a cut to a reference other than the next recorded frame costs
HOLD_COST_SPEECH = 0.25  # opening stds per frame a mouth is held while someone speaks (a held mouth mumbles)
CUT_HORIZON = 2  # frames over which a cut pays off (a stream seeing fewer charges it pro rata)
BLOCK = 500  # frames decided per Viterbi pass over a long file (bounds memory) ...
BLOCK_OVERLAP = 50  # ... of which the last ones are decided again with the next block
# a cut between references is spread over these frames: the new mouth's share in each, the
# first `CROSSING_LEAD` of them before the frame the new mouth was chosen for, so that frame
# shows it half drawn (neither early nor late) and no step is more than a quarter of the
# change; a cut nobody saw coming (a stream with no look-ahead) starts after the lead
CROSSING_SHARES = (0.25, 0.5, 0.75)
CROSSING_LEAD = 1  # 0 or 1: `Crossings` sees one frame ahead


class ReferencePicker:
    """Chooses reference frames for a sequence of wanted lip shapes, from the ``frames`` of
    a bank whose lip shapes are ``shapes`` and head poses ``poses`` (`inference.mouth.face_poses`)."""

    def __init__(self, model: MouthModel, mean_shape: np.ndarray, rest_shape: np.ndarray, frames: np.ndarray, shapes: np.ndarray, poses: np.ndarray):
        self.model, self.mean_shape = model, mean_shape
        self.along_basis = model.basis.numpy().T.copy()  # (40, K): `project` without a torch call per frame
        self.weights = np.ones(model.config.num_coefficients, np.float32)
        self.weights[0] = OPENING_WEIGHT
        self.bank, self.coefficients, self.poses = np.asarray(frames), self.project(shapes), poses
        self.rest = self.project(rest_shape[None])[0]
        opening_std = float(model.scale[0])
        self.switch_cost = SWITCH_COST * opening_std
        self.hold_cost = HOLD_COST_SPEECH * opening_std
        self.pose_weights = POSE_WEIGHT, POSE_WEIGHT_SPEECH  # in silence, in speech
        spread = float(np.median(np.linalg.norm(poses - np.median(poses, axis=0), axis=1))) if len(poses) else 1.0
        self.pose_spread = max(spread, 1e-6)
        self.pose_unit = opening_std / self.pose_spread  # per unit of pose distance
        self.continues = np.r_[False, np.diff(self.bank) == 1]  # bank[n] is the recorded frame after bank[n - 1]
        self.previous: int | None = None  # bank position drawn last (`__call__`)
        self.committed: int | None = None  # bank position the next frame cuts to (`__call__`)

    def project(self, shapes: np.ndarray) -> np.ndarray:
        """The coordinates references are matched in: the shape change along the basis
        (in the avatar's units: `MouthModel.coefficients` times its scale), the opening
        weighted up by `OPENING_WEIGHT`."""
        return ((shapes - self.mean_shape).astype(np.float32) @ self.along_basis) * self.weights

    def resting(self, shapes: np.ndarray) -> np.ndarray:
        """(T,) whether each wanted shape is the rest shape (no one speaks)."""
        return np.all(np.isclose(self.project(shapes), self.rest, atol=1e-5), axis=1)

    def costs(self, shapes: np.ndarray, poses: np.ndarray, resting: np.ndarray) -> np.ndarray:
        """(T, bank) cost of drawing each bank frame's mouth for each of the (T, 40) wanted
        ``shapes`` on targets whose head poses are ``poses`` (T, P); ``resting``: `resting`."""
        wanted = self.project(shapes)
        shape_cost, pose_cost = distances(wanted, self.coefficients), distances(poses, self.poses)
        # beyond the typical spread the cost grows with the square: a reference turned much
        # further than the target distorts the paste (a chin beside the chin) on every frame
        # it is held, so a free run along the recording must not carry it into a head turn
        pose_cost = pose_cost * np.maximum(1.0, pose_cost / self.pose_spread)
        weight = np.where(resting, *self.pose_weights)[:, None]
        return (shape_cost + weight * self.pose_unit * pose_cost).astype(np.float32)

    def positions(self, shapes: np.ndarray, poses: np.ndarray, previous: int | None = None, switch_cost: float | None = None) -> np.ndarray:
        """(T,) bank positions of the cheapest path for the wanted ``shapes`` on targets
        posed ``poses``, starting after bank position ``previous`` (None: anywhere), a cut
        costing ``switch_cost`` (default: the picker's)."""
        blocks = BlockPath(self, previous, switch_cost)
        return np.concatenate([blocks.push(shapes, poses), blocks.finish()])

    def block(self, shapes: np.ndarray, poses: np.ndarray, previous: int | None, switch_cost: float) -> np.ndarray:
        """The cheapest path over one block of frames (see `positions`)."""
        resting = self.resting(shapes)
        holding = np.where(resting, 0.0, self.hold_cost)
        return self._viterbi(self.costs(shapes, poses, resting), holding, previous, switch_cost)

    def path(self, shapes: np.ndarray, poses: np.ndarray, previous: int | None = None) -> np.ndarray:
        """(T,) avatar frame numbers to take the mouths from (see `positions`)."""
        return self.bank[self.positions(shapes, poses, previous)]

    def __call__(self, shapes: np.ndarray, poses: np.ndarray) -> tuple[int, int | None]:
        """The avatar frame for the first of ``shapes`` (the frame being drawn, then the
        look-ahead a stream has beyond it), continuing from the one drawn last, and the
        next frame's where the search cuts there (the picker then keeps to it, so a
        crossing begun ahead of the cut arrives, `Crossings`). A cut pays off over the
        frames it serves; with fewer than `CUT_HORIZON` frames in sight it is charged for
        those alone, or a stream with no look-ahead would hold on to a mouth the speech
        has left."""
        if self.committed is not None:
            position, self.committed = self.committed, None
        else:
            switch_cost = self.switch_cost * min(1.0, len(shapes) / CUT_HORIZON)
            path = self.positions(shapes, poses, self.previous, switch_cost)
            position = int(path[0])
            if len(path) > 1 and self.bank[path[1]] - self.bank[position] not in (0, 1):
                self.committed = int(path[1])
        self.previous = position
        return int(self.bank[position]), None if self.committed is None else int(self.bank[self.committed])

    def _viterbi(self, costs: np.ndarray, holding: np.ndarray, previous: int | None, switch_cost: float) -> np.ndarray:
        steps, size = costs.shape
        back = np.empty((steps, size), np.int64)
        if previous is None:
            total = costs[0].copy()
            back[0] = np.arange(size)
            first = 1
        else:
            total = np.full(size, np.inf, np.float32)
            total[previous] = 0.0
            first = 0
        arange = np.arange(size)
        for t in range(first, steps):
            best = int(np.argmin(total))  # a cut comes from the cheapest path so far
            came, arrived = np.full(size, best), np.full(size, total[best] + switch_cost, np.float32)
            held = total + holding[t] <= arrived  # holding the same reference: free in silence
            came[held], arrived[held] = arange[held], total[held] + holding[t]
            going_on = np.zeros(size, bool)  # the next recorded frame: free
            going_on[1:] = self.continues[1:] & (total[:-1] < arrived[1:])
            came[going_on], arrived[going_on] = arange[going_on] - 1, total[np.flatnonzero(going_on) - 1]
            total = arrived + costs[t]
            back[t] = came
        path = np.empty(steps, np.int64)
        path[-1] = int(np.argmin(total))
        for t in range(steps - 1, 0, -1):
            path[t - 1] = back[t, path[t]]
        return path


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances between rows, through one matrix product."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None] - 2 * a @ b.T
    return np.sqrt(np.maximum(squared, 0))


class BlockPath:
    """`ReferencePicker.positions` for wanted shapes that arrive in pieces (a long file read
    as it is rendered): a Viterbi pass over `BLOCK` frames decides all but its last
    `BLOCK_OVERLAP`, which the next block decides again. A block is searched only once more
    than `BLOCK` frames wait (or at `finish`), so the positions are the ones the whole
    sequence given at once gets, and memory holds one block whatever the length."""

    def __init__(self, picker: ReferencePicker, previous: int | None = None, switch_cost: float | None = None):
        self.picker, self.previous = picker, previous
        self.switch_cost = picker.switch_cost if switch_cost is None else switch_cost
        self.shapes: np.ndarray | None = None  # waiting to be decided, with ...
        self.poses: np.ndarray | None = None  # ... their targets' head poses

    def push(self, shapes: np.ndarray, poses: np.ndarray) -> np.ndarray:
        """Positions decided now that ``shapes`` (on targets posed ``poses``) have arrived."""
        self.shapes = shapes if self.shapes is None else np.concatenate([self.shapes, shapes])
        self.poses = poses if self.poses is None else np.concatenate([self.poses, poses])
        decided = [np.zeros(0, np.int64)]
        while len(self.shapes) > BLOCK:
            decided.append(self._decide(BLOCK, BLOCK - BLOCK_OVERLAP))
        return np.concatenate(decided)

    def finish(self) -> np.ndarray:
        """The positions of every frame still waiting (the sequence has ended)."""
        waiting = 0 if self.shapes is None else len(self.shapes)
        return self._decide(waiting, waiting) if waiting else np.zeros(0, np.int64)

    def _decide(self, size: int, keep: int) -> np.ndarray:
        path = self.picker.block(self.shapes[:size], self.poses[:size], self.previous, self.switch_cost)
        self.previous = int(path[keep - 1])
        self.shapes, self.poses = self.shapes[keep:], self.poses[keep:]
        return path[:keep]


class Crossings:
    """Turns the chosen references, one frame at a time, into what is drawn: (reference,
    the reference it comes from, share of the new one). Where a reference is not the
    recorded frame after the one before (nor the same), the old mouth goes on along the
    recording while it morphs into the new one over the frames of `CROSSING_SHARES`, so no
    frame cuts from one mouth to another. Told the next frame's reference (``following``),
    a crossing starts `CROSSING_LEAD` frame early."""

    def __init__(self, bank: np.ndarray):
        self.last = int(bank.max())
        self.drawn: int | None = None  # the reference drawn last
        self.old: int | None = None  # the mouth being left: where it has got to along the recording
        self.step = len(CROSSING_SHARES)  # frames into the current crossing (all of them: none running)
        self.waiting: int | None = None  # a reference given to `push` whose following one is not known yet

    def __call__(self, reference: int, following: int | None = None) -> tuple[int, int, float]:
        if self.drawn is not None and reference - self.drawn not in (0, 1):
            self.old, self.step = self.drawn, CROSSING_LEAD  # a cut not begun ahead of it: from its middle
        elif CROSSING_LEAD and self.step >= len(CROSSING_SHARES) and following is not None and following - reference not in (0, 1):
            self.old, self.step = reference - 1, 0  # the next frame cuts: this one already leaves `reference` ...
            reference = following  # ... for the mouth chosen for the next (its recorded run before it may be speaking)
        self.drawn = reference
        if self.step >= len(CROSSING_SHARES):
            return reference, reference, 1.0
        self.old = min(self.old + 1, self.last)
        self.step += 1
        return reference, self.old, CROSSING_SHARES[self.step - 1]

    def plan(self, references: np.ndarray) -> np.ndarray:
        """(T, 3) float rows of (reference, from reference, share) for a whole sequence."""
        return np.concatenate([self.push(references), self.finish()])

    def push(self, references: np.ndarray) -> np.ndarray:
        """`plan` for a sequence given in pieces: the rows of the references given so far
        but the last, which waits for the one after it (or `finish`)."""
        given = ([] if self.waiting is None else [self.waiting]) + [int(r) for r in references]
        self.waiting = given[-1] if given else None
        return np.array([self(r, f) for r, f in zip(given, given[1:])], np.float64).reshape(-1, 3)

    def finish(self) -> np.ndarray:
        """The row of the last reference given (the sequence has ended)."""
        waiting, self.waiting = self.waiting, None
        return np.array([] if waiting is None else [self(waiting, None)], np.float64).reshape(-1, 3)
