"""Where particles go: uniform with a minimum separation, polysome-like chains, or a boundary band.

Positions are (x, y) in pixels of the micrograph (x = column, y = row, RELION's coordinate
convention). Every mode keeps all centres at least `min_separation` apart: a candidate is kept
only if no accepted centre is closer (dart throwing, i.e. Poisson-disc sampling by rejection).
When the field is too crowded to place every copy, the placed ones are returned and the shortfall
is logged; callers report it rather than silently overlapping particles.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

PLACEMENT_MODES = ("uniform", "clustered", "boundary")


@dataclass(frozen=True)
class Region:
    """Allowed centres: the field minus a margin, optionally only a circular band (a hole edge, a vesicle)."""

    size: int  # square field, pixels
    margin: float  # keep centres this far from the edges (half a particle box: nothing is cut off)
    band_radius: float | None = None  # circle centred in the field
    band_width: float = 0.0

    def contains(self, points: np.ndarray) -> np.ndarray:
        points = np.atleast_2d(points)
        inside = np.all((points >= self.margin) & (points <= self.size - 1 - self.margin), axis=1)
        if self.band_radius is not None:
            inside &= np.abs(self.distance_to_circle(points)) <= self.band_width / 2
        return inside

    def distance_to_circle(self, points: np.ndarray) -> np.ndarray:
        """Signed distance from the band's circle (positive outside)."""
        centre = (self.size - 1) / 2
        return np.hypot(points[:, 0] - centre, points[:, 1] - centre) - (self.band_radius or 0.0)

    def propose(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n candidate centres, uniform over the region's area."""
        if self.band_radius is None:
            return rng.uniform(self.margin, self.size - 1 - self.margin, size=(n, 2))
        inner = max(self.band_radius - self.band_width / 2, 0.0)
        outer = self.band_radius + self.band_width / 2
        radius = np.sqrt(rng.uniform(inner**2, outer**2, n))  # uniform in area, not in radius
        angle = rng.uniform(0, 2 * math.pi, n)
        centre = (self.size - 1) / 2
        return np.stack([centre + radius * np.cos(angle), centre + radius * np.sin(angle)], axis=1)


class _Accepted:
    """Accepted centres with a cell grid, so each separation check looks at 9 cells, not all points."""

    def __init__(self, size: int, min_separation: float):
        self.cell = max(min_separation, 1.0)
        self.min_sq = min_separation**2
        self.cells: dict[tuple[int, int], list[int]] = {}
        self.points: list[tuple[float, float]] = []

    def _key(self, point) -> tuple[int, int]:
        return int(point[0] // self.cell), int(point[1] // self.cell)

    def fits(self, point) -> bool:
        cx, cy = self._key(point)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for index in self.cells.get((cx + dx, cy + dy), ()):
                    px, py = self.points[index]
                    if (px - point[0]) ** 2 + (py - point[1]) ** 2 < self.min_sq:
                        return False
        return True

    def add(self, point) -> None:
        self.cells.setdefault(self._key(point), []).append(len(self.points))
        self.points.append((float(point[0]), float(point[1])))

    def array(self) -> np.ndarray:
        return np.array(self.points, dtype=np.float64).reshape(-1, 2)


def place_uniform(n: int, region: Region, min_separation: float, rng: np.random.Generator,
                  existing: np.ndarray | None = None, max_tries_per_particle: int = 200) -> np.ndarray:
    """n centres uniform over the region, none closer than min_separation (also to `existing`)."""
    accepted = _seeded(region, min_separation, existing)
    start = len(accepted.points)
    tries = 0
    while len(accepted.points) - start < n and tries < n * max_tries_per_particle:
        batch = region.propose(rng, 256)
        for point in batch:
            tries += 1
            if accepted.fits(point):
                accepted.add(point)
                if len(accepted.points) - start == n:
                    break
    return _report(accepted.array()[start:], n, "uniform")


def place_chains(n: int, region: Region, min_separation: float, rng: np.random.Generator,
                 chain_length: int = 6, spacing: float | None = None, turn_deg: float = 30.0,
                 existing: np.ndarray | None = None, max_chain_starts: int | None = None) -> np.ndarray:
    """n centres in polysome-like chains: a random start, then steps of `spacing` whose direction
    turns by at most `turn_deg` each time; a blocked step ends the chain and a new one starts."""
    spacing = spacing or 1.15 * min_separation
    if spacing < min_separation:
        raise ValueError(f"chain spacing {spacing} is below the minimum separation {min_separation}")
    accepted = _seeded(region, min_separation, existing)
    start = len(accepted.points)
    starts = 0
    max_chain_starts = max_chain_starts or 50 * n
    while len(accepted.points) - start < n and starts < max_chain_starts:
        starts += 1
        point = region.propose(rng, 1)[0]
        if not accepted.fits(point):
            continue
        accepted.add(point)
        direction = rng.uniform(0, 2 * math.pi)
        for _ in range(chain_length - 1):
            if len(accepted.points) - start == n:
                break
            for _attempt in range(8):
                turn = math.radians(rng.uniform(-turn_deg, turn_deg))
                step = point + spacing * np.array([math.cos(direction + turn), math.sin(direction + turn)])
                if region.contains(step)[0] and accepted.fits(step):
                    direction += turn
                    point = step
                    accepted.add(point)
                    break
            else:
                break
    return _report(accepted.array()[start:], n, "clustered")


def _seeded(region: Region, min_separation: float, existing: np.ndarray | None) -> _Accepted:
    accepted = _Accepted(region.size, min_separation)
    for point in np.zeros((0, 2)) if existing is None else existing:
        accepted.add(point)
    return accepted


def _report(points: np.ndarray, wanted: int, mode: str) -> np.ndarray:
    if len(points) < wanted:
        log.warning("%s placement fitted %d of %d particles at this separation and field size", mode, len(points), wanted)
    return points


def nearest_neighbour_distances(points: np.ndarray) -> np.ndarray:
    """Distance from each centre to its nearest other centre."""
    if len(points) < 2:
        return np.full(len(points), np.inf)
    difference = points[:, None, :] - points[None, :, :]
    distance = np.sqrt((difference**2).sum(-1))
    np.fill_diagonal(distance, np.inf)
    return distance.min(axis=1)
