"""Image analysis with Pillow: format, size, animation, colours and EXIF.

Untrusted uploads are handled defensively:

* at most ``max_bytes + 1`` bytes are ever read from a file-like object;
* only common web/photo formats are attempted (``ALLOWED_FORMATS``), so
  Pillow never hands e.g. EPS files to Ghostscript;
* the pixel count is checked from the header, before any pixel is decoded;
* Pillow reads file structure (JPEG markers, PNG chunks, GIF blocks, TIFF
  tags) in Python, one or two ``read()`` calls per item, so a file made of
  millions of tiny items would cost seconds within the byte limit. The file
  object Pillow reads from serves at most ``MAX_READS`` reads (a legitimate
  10 MB animated GIF needs about 80,000), and TIFF pages, which cost a whole
  directory parse each, are counted up to ``MAX_FRAMES`` only;
* Pillow's own decompression-bomb guard is escalated from a warning to an
  error for the duration of the call (``warnings.catch_warnings``). That
  context manager swaps the process-wide filter list, so in threaded servers
  it is best-effort only; the ``max_pixels`` header check is the real
  defence and does not depend on it. No Pillow global is modified.

Refusals (all ``ProductInputError`` with ``field="image"``):

* ``image_too_large`` (413): more than ``max_bytes`` bytes;
* ``image_too_many_pixels`` (413, like the byte limit, because the payload is
  too big to process rather than malformed): width*height above
  ``max_pixels`` (JPEG, which decodes straight to 1/8 scale) or above
  ``max_full_decode_pixels`` (every other format, decoded in full: a 16-bit
  RGBA PNG costs about 35 ns a pixel), or above Pillow's decompression-bomb
  threshold (``Image.MAX_IMAGE_PIXELS``, ~89 MP), whichever is lowest;
* ``image_too_complex`` (413, for the same reason): more than ``MAX_READS``
  reads to get through the file's structure, or a JPEG whose scans times
  pixels exceed ``MAX_JPEG_SCAN_PIXELS`` (libjpeg makes a pass over every
  block for each scan, even at 1/8 scale: at 40 MP each scan costs about
  13 ms, and 10 MB holds 150,000 tiny scans).
* ``invalid_image`` (400): empty, not an image, truncated, corrupt or an
  unsupported format. Any exception Pillow raises maps here.
"""

from __future__ import annotations

import io
import math
import unicodedata
import warnings
from collections import Counter
from typing import IO, Any

from PIL import Image

from metering.products.errors import ProductInputError

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
DEFAULT_MAX_FULL_DECODE_PIXELS = 24_000_000
# Formats Pillow can decode at a reduced scale (Image.draft).
REDUCED_DECODE_FORMATS = frozenset({"JPEG", "MPO"})
# Progressive encoders write about 10 scans; this allows 25 at 40 MP, 83 at 12 MP
# (about a third of a second of scans). Outside entropy-coded data, which escapes
# every 0xFF, the bytes FF DA only start a scan, so counting them bounds the scans.
MAX_JPEG_SCAN_PIXELS = 1_000_000_000
SOS_MARKER = b"\xff\xda"
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "AVIF")
SAMPLE_SIZE = 64  # colours are estimated on a 64x64 thumbnail (4096 pixels)
MAX_COLORS = 5
# Palette entries closer than this (Euclidean RGB) are one perceived colour;
# merging them stops JPEG noise from splitting red into #ff0000 and #fe0000.
MERGE_DISTANCE = 24.0
MAX_EXIF_STRING = 256
# A JPEG's EXIF segment holds at most 64 KiB, and no camera writes more in any format; a larger
# block (PNG eXIf, WebP EXIF) is skipped unparsed, since Pillow reads every one of its entries.
MAX_EXIF_BYTES = 64 * 1024
# read() calls Pillow may make on one upload: 2.5 times what a 10 MB animated GIF needs.
MAX_READS = 200_000
# Frames (or TIFF pages) are counted up to here; more is reported as this many.
MAX_FRAMES = 1_000

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
TAG_MAKE, TAG_MODEL, TAG_ORIENTATION, TAG_SOFTWARE = 271, 272, 274, 305
TAG_DATETIME_ORIGINAL = 36867
GPS_LAT_REF, GPS_LAT, GPS_LON_REF, GPS_LON = 1, 2, 3, 4

ImageInput = bytes | bytearray | memoryview | IO[bytes]
RGB = tuple[int, int, int]


def image_analyze(
    *,
    data: ImageInput,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_full_decode_pixels: int = DEFAULT_MAX_FULL_DECODE_PIXELS,
) -> dict[str, Any]:
    """Describe an image given as bytes or a binary file-like object.

    Returns::

        {"format": "PNG", "width": int, "height": int, "mode": "RGB",
         "megapixels": float (2 dp), "animated": bool, "frames": int,
         "dominant_colors": [{"hex": "#rrggbb", "share": float (3 dp)}, ...],
         "exif": {"make", "model", "datetime_original", "orientation",
                  "software", "gps_latitude", "gps_longitude"}}

    ``exif`` holds only the keys present in the file ({} when none).
    ``dominant_colors`` (at most 5, largest share first) describes the first
    frame, ignores (mostly) transparent pixels and is [] for a fully
    transparent image. Refusals are
    described in the module docstring.
    """
    raw = _read_limited(data, max_bytes)
    with warnings.catch_warnings():
        # Corrupt uploads make Pillow warn ("Corrupt EXIF data", ...); that is
        # attacker-controlled log spam, and the outcome is reported anyway.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return _analyze_bytes(raw, max_pixels, max_full_decode_pixels)
        except ProductInputError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise _too_many_pixels() from exc
        except Exception as exc:
            # Pillow signals bad input with OSError, SyntaxError, ValueError,
            # struct.error, EOFError, IndexError, ZeroDivisionError... no
            # common base, so anything from decoding means "not a usable image".
            raise _invalid_image() from exc


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------


def _read_limited(data: object, max_bytes: int) -> bytes:
    """Return the payload as bytes, reading at most ``max_bytes + 1``."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
    elif hasattr(data, "read"):
        _check_declared_size(data, max_bytes)
        try:
            raw = data.read(max_bytes + 1)  # one extra byte reveals "too big"
        except (OSError, ValueError) as exc:  # closed/unreadable stream
            raise _invalid_image() from exc
        if not isinstance(raw, (bytes, bytearray)):  # e.g. a text-mode file
            raise _invalid_image()
        raw = bytes(raw)
    else:
        raise _invalid_image()
    if len(raw) > max_bytes:
        raise _too_large(max_bytes)
    if not raw:
        raise _invalid_image()
    return raw


def _check_declared_size(data: object, max_bytes: int) -> None:
    # Django's UploadedFile knows its size: refuse without reading anything.
    size = getattr(data, "size", None)
    if isinstance(size, int) and not isinstance(size, bool) and size > max_bytes:
        raise _too_large(max_bytes)


def _too_large(max_bytes: int) -> ProductInputError:
    return ProductInputError(
        f"Image is larger than {max_bytes} bytes.",
        code="image_too_large",
        status=413,
        field="image",
    )


def _too_many_pixels(fmt: str | None = None, limit: int | None = None) -> ProductInputError:
    message = f"{fmt} images may have at most {limit:,} pixels." if fmt and limit else "Image has too many pixels."
    return ProductInputError(message, code="image_too_many_pixels", status=413, field="image")


def _too_complex() -> ProductInputError:
    return ProductInputError(
        "Image has too many parts (frames, chunks or markers) to analyze.",
        code="image_too_complex",
        status=413,
        field="image",
    )


def _invalid_image() -> ProductInputError:
    return ProductInputError(
        "Not a valid image in a supported format (JPEG, PNG, GIF, WebP, BMP, TIFF, AVIF).",
        code="invalid_image",
        field="image",
    )


# --------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------


def _allowed_formats() -> list[str]:
    # AVIF (and others) depend on how Pillow was built; only offer what exists.
    Image.init()
    return [fmt for fmt in ALLOWED_FORMATS if fmt in Image.OPEN]


def _analyze_bytes(raw: bytes, max_pixels: int, max_full_decode_pixels: int) -> dict[str, Any]:
    with Image.open(_ReadBudget(raw, MAX_READS), formats=_allowed_formats()) as img:
        width, height = img.size  # from the header; nothing decoded yet
        if width <= 0 or height <= 0:
            raise _invalid_image()
        reduced = img.format in REDUCED_DECODE_FORMATS
        limit = max_pixels if reduced else min(max_pixels, max_full_decode_pixels)
        if width * height > limit:
            raise _too_many_pixels(img.format, limit)
        if _jpeg_coded(img) and raw.count(SOS_MARKER) * width * height > MAX_JPEG_SCAN_PIXELS:
            raise _too_complex()
        fmt, mode, frames = img.format, img.mode, _frame_count(img)
        exif = _exif_summary(img)
        colors = _dominant_colors(img)  # first decode happens here
    return {
        "format": fmt,
        "width": width,
        "height": height,
        "mode": mode,
        "megapixels": round(width * height / 1_000_000, 2),
        "animated": frames > 1,
        "frames": frames,
        "dominant_colors": colors,
        "exif": exif,
    }


def _jpeg_coded(img: Image.Image) -> bool:
    return img.format in REDUCED_DECODE_FORMATS or (
        img.format == "TIFF" and img.info.get("compression") in ("jpeg", "tiff_jpeg")
    )


def _frame_count(img: Image.Image) -> int:
    """Frames, at most MAX_FRAMES; the image is left on its first frame."""
    if img.format == "TIFF":
        return _pages_counted(img)
    # WebP, PNG and AVIF state the count in a header; for GIF Pillow walks the
    # block headers without decoding pixels (a walk _ReadBudget bounds).
    frames = getattr(img, "n_frames", 1)
    return min(frames, MAX_FRAMES) if isinstance(frames, int) and frames > 0 else 1


def _pages_counted(img: Image.Image) -> int:
    # Each TIFF page is a whole tag directory to parse: seek page by page and
    # stop at MAX_FRAMES rather than let n_frames walk tens of thousands.
    pages = 1
    try:
        while pages < MAX_FRAMES:
            img.seek(pages)
            pages += 1
    except EOFError:
        pass
    img.seek(0)
    return pages


class _ReadBudget(io.BytesIO):
    """The upload as a file that serves at most ``max_reads`` reads, then refuses."""

    def __init__(self, raw: bytes, max_reads: int) -> None:
        super().__init__(raw)
        self._reads_left = max_reads

    def read(self, size: int | None = -1) -> bytes:
        self._reads_left -= 1
        if self._reads_left < 0:
            raise _too_complex()
        return super().read(size)


# --------------------------------------------------------------------------
# Dominant colours
# --------------------------------------------------------------------------


def _dominant_colors(img: Image.Image) -> list[dict[str, Any]]:
    sample = _sample_rgba(img)
    quantized = sample.convert("RGB").quantize(colors=MAX_COLORS, method=Image.Quantize.MEDIANCUT)
    palette = quantized.getpalette() or []
    opaque = sample.getchannel("A").tobytes()
    # One byte per pixel in mode "P"; skip (mostly) transparent pixels, whose
    # RGB is invisible and often arbitrary black.
    counts = Counter(
        idx for idx, alpha in zip(quantized.tobytes(), opaque, strict=True) if alpha >= 128
    )
    merged = _merge_similar(
        [(tuple(palette[3 * idx : 3 * idx + 3]), n) for idx, n in counts.most_common()]
    )
    total = sum(n for _, n in merged)
    return [
        {"hex": "#{:02x}{:02x}{:02x}".format(*rgb), "share": round(n / total, 3)}
        for rgb, n in merged[:MAX_COLORS]
    ]


def _sample_rgba(img: Image.Image) -> Image.Image:
    """A SAMPLE_SIZE x SAMPLE_SIZE RGBA copy of the first frame."""
    # JPEG can decode at 1/2..1/8 scale directly: much faster, same colours.
    img.draft(None, (SAMPLE_SIZE * 2, SAMPLE_SIZE * 2))
    size = (SAMPLE_SIZE, SAMPLE_SIZE)  # stretching keeps each colour's area share
    try:
        # Resize in the native mode so big palette/grey images are never
        # expanded to full-size RGBA (Pillow uses NEAREST for "1"/"P").
        small = img.resize(size, Image.Resampling.BOX)
    except ValueError:  # modes resize() does not support, e.g. "PA"
        small = img.convert("RGBA").resize(size, Image.Resampling.BOX)
    if small.mode.startswith("I;16"):
        # 16-bit grey would clip to white in convert(); scale to 8 bits first.
        small = small.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    return small.convert("RGBA")


def _merge_similar(colors: list[tuple[Any, int]]) -> list[tuple[RGB, int]]:
    """Fold each colour into an earlier (more frequent) near-identical one."""
    merged: list[list[Any]] = []
    for rgb, count in colors:  # most frequent first, so it names the group
        for group in merged:
            if math.dist(group[0], rgb) < MERGE_DISTANCE:
                group[1] += count
                break
        else:
            merged.append([rgb, count])
    merged.sort(key=lambda group: -group[1])
    return [(tuple(rgb), count) for rgb, count in merged]


# --------------------------------------------------------------------------
# EXIF
# --------------------------------------------------------------------------


def _exif_summary(img: Image.Image) -> dict[str, Any]:
    """Basic EXIF fields; best effort, {} when absent, unreadable or larger than MAX_EXIF_BYTES."""
    raw = img.info.get("exif")
    if isinstance(raw, bytes) and len(raw) > MAX_EXIF_BYTES:
        return {}
    try:
        exif = img.getexif()
        summary = _exif_strings(exif)
        orientation = exif.get(TAG_ORIENTATION)
        if isinstance(orientation, int) and 1 <= orientation <= 8:
            summary["orientation"] = orientation
        summary.update(_gps(exif.get_ifd(GPS_IFD)))
    except ProductInputError:  # the read budget ran out: the whole image is refused
        raise
    except Exception:
        # A mangled EXIF block should not refuse an otherwise fine image.
        return {}
    return summary


def _exif_strings(exif: Image.Exif) -> dict[str, Any]:
    values = {
        "make": exif.get(TAG_MAKE),
        "model": exif.get(TAG_MODEL),
        "software": exif.get(TAG_SOFTWARE),
        "datetime_original": exif.get_ifd(EXIF_IFD).get(TAG_DATETIME_ORIGINAL),
    }
    cleaned = {key: _clean_string(value) for key, value in values.items()}
    return {key: value for key, value in cleaned.items() if value}


def _clean_string(value: object) -> str | None:
    # EXIF text is attacker-controlled: drop control chars / lone surrogates
    # (they would break JSON encoding) and cap the length.
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if unicodedata.category(ch) not in ("Cc", "Cs"))
    return text.strip()[:MAX_EXIF_STRING] or None


def _gps(gps: dict[int, Any]) -> dict[str, float]:
    lat = _dms_to_degrees(gps.get(GPS_LAT), gps.get(GPS_LAT_REF), "S", 90)
    lon = _dms_to_degrees(gps.get(GPS_LON), gps.get(GPS_LON_REF), "W", 180)
    if lat is None or lon is None:  # half a coordinate is no coordinate
        return {}
    return {"gps_latitude": lat, "gps_longitude": lon}


def _dms_to_degrees(dms: object, ref: object, negative_ref: str, bound: float) -> float | None:
    """(degrees, minutes, seconds) rationals + hemisphere ref -> signed float."""
    try:
        degrees, minutes, seconds = (float(part) for part in dms)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    value = degrees + minutes / 60 + seconds / 3600
    if not math.isfinite(value) or value > bound or value < 0:
        return None
    if isinstance(ref, bytes):
        ref = ref.decode("ascii", errors="replace")
    sign = -1 if isinstance(ref, str) and ref.strip("\x00 ").upper() == negative_ref else 1
    return round(sign * value, 6)
