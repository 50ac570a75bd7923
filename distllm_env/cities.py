"""The shipped world-cities table (``distllm_env/data/cities.csv``: name, region, latitude,
longitude), its names and regions, and great-circle distances: the geography behind
:func:`distllm_env.topology.geo_topology`.  Moved out of :mod:`distllm_env.topology`, which still
re-exports every public name.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

#: Mean Earth radius (km), the sphere of :func:`great_circle_km` (IUGG mean radius R₁ = 6,371.0 km).
EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class City:
    name: str
    region: str
    lat: float
    lon: float


@lru_cache(maxsize=1)
def world_cities() -> tuple[City, ...]:
    text = resources.files("distllm_env").joinpath("data/cities.csv").read_text()
    rows = csv.DictReader(ln for ln in text.splitlines() if not ln.startswith("#"))
    return tuple(City(r["name"], r["region"], float(r["lat"]), float(r["lon"])) for r in rows)


def unknown_city_message(name) -> str:
    """The error text for a city that is not shipped (the full list is in docs/scenarios.md)."""
    shown = repr(name) if len(repr(name)) <= 40 else repr(name)[:39] + "…"
    names = sorted(c.name for c in world_cities())
    return (f"unknown city {shown}; {len(names)} shipped cities are listed in docs/scenarios.md "
            f"({', '.join(names[:5])}, …)")


@lru_cache(maxsize=1)
def known_cities() -> frozenset[str]:
    """Names of the shipped cities (``topology.geo.cities`` values)."""
    return frozenset(c.name for c in world_cities())


@lru_cache(maxsize=1)
def known_regions() -> tuple[str, ...]:
    """The regions of the shipped cities (``topology.geo.regions`` values), sorted."""
    return tuple(sorted({c.region for c in world_cities()}))


def great_circle_km(lat1, lon1, lat2, lon2):
    """Haversine distance on a sphere of radius 6,371 km."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _duplicate_mask(names: list[str]) -> np.ndarray:
    seen, out = set(), []
    for nm in names:
        out.append(nm in seen)
        seen.add(nm)
    return np.asarray(out, dtype=bool)


def _jitter(rng, lat, lon, jitter_km, mask):
    if not mask.any():
        return lat, lon
    k = int(mask.sum())
    r = jitter_km * np.sqrt(rng.random(k))
    theta = rng.random(k) * 2 * math.pi
    lat, lon = lat.copy(), lon.copy()
    lat[mask] += (r * np.cos(theta)) / 111.0
    lon[mask] += (r * np.sin(theta)) / (111.0 * np.maximum(np.cos(np.radians(lat[mask])), 0.05))
    return lat, lon


__all__ = ["City", "EARTH_RADIUS_KM", "great_circle_km", "known_cities", "known_regions", "unknown_city_message",
           "world_cities"]
