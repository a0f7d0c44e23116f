"""File -> pixels: the one decoder behind every path that turns an image file into model input.

The tf.data pipelines (image folders and TFDS records alike, through `decode_tf`), `predict`,
`explain`, robustness and the Python API (`read`) all call `decode`, so one file gives the same
pixels, and so the same model input, whichever path reads it.

Which decoder, and why: Pillow (PIL), run inside `tf.numpy_function` under the pipeline's parallel
`map`. Only Pillow reads what users bring (EXIF orientation, ICC profiles, WebP, TIFF, CMYK,
16-bit, animated files); `tf.io.decode_image` reads none of these and its JPEG output differs from
Pillow's by a few levels, so two decoders could never agree bit for bit. Pillow releases the GIL
while it decodes, transposes and converts, so the parallel map keeps several decodes in flight on
the host, off the accelerator thread (throughput: `benchmarks/input_pipeline.py --only folder`).

The pixels are the image as a colour-managed viewer (a web browser) shows it:
  - format from the file's content, not its name (a PNG named .jpg reads as PNG); JPEG
    (baseline, progressive, gray, CMYK), PNG, WebP, TIFF, BMP, GIF, MPO and every other format
    Pillow reads;
  - animated files (GIF, WebP, APNG, multi-page TIFF): the first frame;
  - EXIF orientation applied (all 8 values, `PIL.ImageOps.exif_transpose`): a phone photo stored
    sideways comes out upright;
  - 16-bit gray and 16-bit RGB(A): value >> 8 (the high byte; what libpng's strip-16 and Pillow's
    16-bit RGB reader do, so 65535 -> 255 and 257 k -> k); 1-bit, palette, LA, CMYK, YCbCr
    converted by Pillow; 32-bit float images are refused (they have no standard display range);
  - an embedded ICC profile that is not sRGB is converted to sRGB (perceptual intent, LittleCMS
    through `PIL.ImageCms`), as browsers do; files without a profile are taken as sRGB. A PNG
    gAMA chunk without iCCP/sRGB chunks is applied (display gamma 2.2, as browsers do); the
    usual gAMA of 1/2.2 changes nothing;
  - transparency (alpha channel, palette or colour-key tRNS) composited over `background`
    (white by default, what image viewers and browsers on a light page show; any PIL colour
    name, '#rrggbb' or 'rgb(r, g, b)'; config key `data.alpha_background`).
The result is uint8 (H, W, channels): channels 3 = RGB, 1 = gray (ITU-R 601-2 luma of the RGB
result, Pillow's 'L'; exact for gray images).
"""

from __future__ import annotations

import functools
import io
import os
import re

import numpy as np
from PIL import Image, ImageCms, ImageColor, ImageOps

from jaxvision import env_settings

DEFAULT_BACKGROUND = "white"
# Environment variable that sets PIL.Image.MAX_IMAGE_PIXELS (Pillow's decompression-bomb guard,
# default 89,478,485 pixels: it refuses twice that) for every command; 0 or 'none' turns it off.
MAX_PIXELS_ENV = "JAXVISION_MAX_IMAGE_PIXELS"
_ORIENTATION = 0x0112  # EXIF tag (TIFF/EP, EXIF 2.3 section 4.6.4)
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N", "I")
_TRANSPARENT = ("RGBA", "LA", "PA", "RGBa", "La")
_DISPLAY_GAMMA = 2.2  # the sRGB display's approximate gamma (PNG spec 1.2, section 10.5)


def _apply_pixel_limit() -> None:
    """Pillow's limit as MAX_PIXELS_ENV sets it (unset: Pillow's own). Read at each decode, not
    at import: a bad value is a ValueError naming the variable where an image is read (and at
    the start of every command, ``env_settings.check_all``), never an import error."""
    limit = env_settings.pixel_limit(MAX_PIXELS_ENV)
    if limit is not False:
        Image.MAX_IMAGE_PIXELS = limit


def _configure_pillow() -> None:
    """HEIC/HEIF through pillow-heif when it is installed."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return
    register_heif_opener()


_configure_pillow()


class ImageFileError(ValueError):
    """A file that cannot be read as an image; the message names the file and the reason."""


def read(path: str | os.PathLike, *, channels: int = 3, background=DEFAULT_BACKGROUND
         ) -> np.ndarray:
    """Reads an image file as a person sees it: uint8 numpy (H, W, channels).

    Raises ImageFileError naming the file when it is missing, unreadable, corrupt or not an image.
    """
    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except FileNotFoundError:
        raise ImageFileError(f"image file {os.fspath(path)!r} does not exist") from None
    except OSError as e:
        raise ImageFileError(f"cannot read {os.fspath(path)!r}: {e}") from None
    try:
        return decode(encoded, channels=channels, background=background)
    except ImageFileError as e:
        raise ImageFileError(f"{os.fspath(path)!r}: {e}") from None


def decode(encoded: bytes, *, channels: int = 3, background=DEFAULT_BACKGROUND) -> np.ndarray:
    """Encoded image bytes (any format Pillow reads) -> uint8 numpy (H, W, channels), upright,
    colour-managed to sRGB and composited over `background` (see the module docstring).

    Raises ImageFileError when the bytes are not a readable image.
    """
    _apply_pixel_limit()
    fill = background_rgb(background)
    try:
        with Image.open(io.BytesIO(bytes(encoded))) as im:
            im.seek(0)  # animated: the first frame
            im.load()
            image = _upright(im)
            image = _to_8bit(image)
            image = _to_srgb(image, im.info)
            return _pixels(image, channels, fill)
    except ImageFileError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageFileError(_too_many_pixels(e)) from None
    except Image.UnidentifiedImageError:
        # Pillow's own wording names its in-memory buffer ("<_io.BytesIO object at 0x...>").
        raise ImageFileError(_unidentified(bytes(encoded[:16]))) from None
    except Exception as e:  # Pillow raises many types for bad files; name the cause
        raise ImageFileError(f"not a readable image ({type(e).__name__}: {e})") from None


def _too_many_pixels(error: Exception) -> str:
    """Our wording of Pillow's DecompressionBombError: size, limit, how to raise the limit."""
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(error))
    size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
    limit = int(found.group(2)) if found else 2 * (Image.MAX_IMAGE_PIXELS or 0)
    return (f"{size}, above Pillow's decompression-bomb limit of {limit:,} (twice "
            f"PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS:,}); if you trust the file, "
            f"raise the limit: {MAX_PIXELS_ENV}=N in the environment (or set "
            "PIL.Image.MAX_IMAGE_PIXELS in Python), or downscale the image")


def _unidentified(head: bytes) -> str:
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypmsf1", b"ftypheif"):
        return ("a HEIC/HEIF image, which Pillow reads only with the pillow-heif plugin: "
                "pip install pillow-heif (jaxvision registers it when installed)")
    return "not an image file (Pillow recognises no image format in its content)"


def from_array(image: np.ndarray, *, channels: int = 3, background=DEFAULT_BACKGROUND
               ) -> np.ndarray:
    """uint8 pixels (H, W) or (H, W, C), C = 1 (gray), 3 (RGB) or 4 (RGBA) -> uint8 (H, W,
    channels), with the same alpha compositing and channel conversion as `decode`."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ImageFileError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    modes = {2: "L", 3: "RGB", 4: "RGBA"}
    mode = modes.get(image.shape[-1] if image.ndim == 3 else image.ndim)
    if image.ndim not in (2, 3) or mode is None:
        raise ImageFileError(f"expected (H, W) or (H, W, 1|3|4) pixels, got shape {image.shape}")
    return _pixels(Image.fromarray(image, mode), channels, background_rgb(background))


def _pixels(im: Image.Image, channels: int, fill: tuple[int, int, int]) -> np.ndarray:
    """The last step of every path: composite, then Pillow's 'L' or 'RGB' as uint8 numpy."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    image = _composite(im, fill)
    target = "L" if channels == 1 else "RGB"
    out = np.array(image if image.mode == target else image.convert(target), dtype=np.uint8)
    return out.reshape(out.shape[0], out.shape[1], channels)


def check(path: str | os.PathLike) -> str | None:
    """None when `path` decodes as an image, else the reason (for folder indexing)."""
    try:
        read(path, channels=3)
    except ImageFileError as e:
        return str(e).removeprefix(f"{os.fspath(path)!r}: ")
    return None


@functools.lru_cache(maxsize=64)
def background_rgb(background) -> tuple[int, int, int]:
    """A PIL colour ('white', '#808080', 'rgb(0, 0, 0)') or an (r, g, b) tuple -> uint8 RGB."""
    if isinstance(background, (tuple, list)) and len(background) == 3:
        rgb = tuple(int(v) for v in background)
        if all(0 <= v <= 255 for v in rgb):
            return rgb
    elif isinstance(background, str):
        try:
            return ImageColor.getrgb(background)[:3]
        except ValueError:
            pass
    raise ValueError(
        f"alpha background {background!r} is not a colour; use a name ('white', 'black'), "
        "'#rrggbb', 'rgb(r, g, b)' or an (r, g, b) tuple of 0..255"
    )


# ----------------------------------------------------------------------------- steps
def _upright(im: Image.Image) -> Image.Image:
    """Applies the EXIF orientation (1..8)."""
    orientation = im.getexif().get(_ORIENTATION, 1)
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im)
    return im


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit gray -> 8-bit by the high byte; 1-bit -> L; 32-bit float refused."""
    if im.mode in _SIXTEEN_BIT:
        values = np.asarray(im).astype(np.int64)
        return Image.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8), "L")
    if im.mode == "F":
        raise ImageFileError(
            "32-bit float images have no standard display range; save it as 8- or 16-bit"
        )
    if im.mode == "1":
        return im.convert("L")
    return im


def _to_srgb(im: Image.Image, info: dict) -> Image.Image:
    """Embedded ICC profile -> sRGB; else a PNG gAMA chunk applied; else unchanged."""
    icc = info.get("icc_profile")
    if icc:
        transform = _icc_transform(bytes(icc), _cms_mode(im))
        if transform is not None:
            return _with_alpha_kept(im, lambda colour: ImageCms.applyTransform(colour, transform))
        return im
    gamma = info.get("gamma")
    if gamma and "srgb" not in info and abs(float(gamma) * _DISPLAY_GAMMA - 1.0) > 0.01:
        lut = _gamma_lut(round(float(gamma), 5))
        return _with_alpha_kept(im, lambda colour: colour.point(lut * len(colour.getbands())))
    return im


def _composite(im: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Transparency (alpha, palette or colour-key tRNS) composited over `fill`."""
    if im.mode in _TRANSPARENT or "transparency" in im.info:
        rgba = im.convert("RGBA")
        out = Image.new("RGBA", rgba.size, fill + (255,))
        out.alpha_composite(rgba)
        return out.convert("RGB")
    if im.mode in ("L", "RGB"):
        return im
    return im.convert("RGB")  # P, CMYK, YCbCr, HSV, LAB ... (Pillow's conversions)


def _cms_mode(im: Image.Image) -> str:
    """The colour mode LittleCMS transforms (alpha handled separately)."""
    if im.mode in ("L", "LA", "La"):
        return "L"
    if im.mode == "CMYK":
        return "CMYK"
    return "RGB"


def _with_alpha_kept(im: Image.Image, convert) -> Image.Image:
    """Applies `convert` to the colour part of `im`, keeping its alpha (and transparency)."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    alpha = None
    if im.mode in _TRANSPARENT:
        rgba = im.convert("RGBA") if im.mode not in ("LA",) else im
        alpha = rgba.getchannel("A")
        im = rgba.convert("L" if rgba.mode == "LA" else "RGB")
    elif im.mode not in ("L", "RGB", "CMYK"):
        im = im.convert("RGB")
    out = convert(im)
    if alpha is not None:
        out = out.convert("RGB")
        out.putalpha(alpha)
    return out


@functools.lru_cache(maxsize=32)
def _icc_transform(icc: bytes, mode: str):
    """LittleCMS transform of this profile to sRGB (RGB out), or None when the profile already is
    sRGB (converting would only add rounding) or LittleCMS cannot use it."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in (ImageCms.getProfileDescription(profile) or "").lower():
            return None
        return ImageCms.buildTransform(
            profile, ImageCms.createProfile("sRGB"), mode, "RGB",
            renderingIntent=ImageCms.Intent.PERCEPTUAL,
        )
    except (ImageCms.PyCMSError, OSError, ValueError):
        # A broken profile: browsers fall back to sRGB, so do we.
        return None


@functools.lru_cache(maxsize=16)
def _gamma_lut(gamma: float) -> list[int]:
    """PNG gAMA (file gamma g: sample = linear ** g) -> display samples for gamma 2.2."""
    exponent = 1.0 / (gamma * _DISPLAY_GAMMA)
    levels = np.arange(256) / 255.0
    return np.round(255.0 * levels**exponent).astype(int).tolist()


# ----------------------------------------------------------------------------- tf.data
def decode_tf(encoded, channels: int, background=DEFAULT_BACKGROUND):
    """`decode` as a tf.data op: string scalar -> uint8 (H, W, channels) tensor.

    Runs Pillow through `tf.numpy_function`; under `Dataset.map(num_parallel_calls=...)` decodes
    run in parallel host threads (Pillow releases the GIL while decoding).
    """
    from jaxvision.data._tf import tf

    background_rgb(background)  # a bad colour fails here, at graph build, not in a worker

    def run(data):
        return decode(data, channels=channels, background=background)

    image = tf.numpy_function(run, [encoded], tf.uint8, stateful=False)
    return tf.ensure_shape(image, [None, None, channels])


def decode_many(encoded, *, channels: int, background, height: int, width: int) -> np.ndarray:
    """`decode` of each of a sequence of same-sized encoded images -> uint8 (N, height, width,
    channels). Raises ImageFileError when one has another size."""
    out = np.empty((len(encoded), height, width, channels), np.uint8)
    for i, data in enumerate(encoded):
        image = decode(data, channels=channels, background=background)
        if image.shape != out.shape[1:]:
            raise ImageFileError(
                f"image {i} of a fixed-size dataset is {image.shape[:2]}, not ({height}, {width})"
            )
        out[i] = image
    return out


def decode_many_tf(encoded, channels: int, background, height: int, width: int):
    """`decode_many` as a tf.data op: string (N,) -> uint8 (N, height, width, channels).

    For datasets whose images all have one size: one Python call per chunk instead of per image
    (the call itself costs about as much as decoding a 32 x 32 PNG), the same pixels as
    `decode_tf`.
    """
    from jaxvision.data._tf import tf

    background_rgb(background)

    def run(data):
        return decode_many(data, channels=channels, background=background, height=height,
                           width=width)

    images = tf.numpy_function(run, [encoded], tf.uint8, stateful=False)
    return tf.ensure_shape(images, [None, height, width, channels])
