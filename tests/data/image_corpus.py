"""A corpus of small image files (made with PIL) covering every way a file can differ from what a
viewer shows, each with the pixels a viewer shows (uint8 RGB, computed independently with numpy).

`write_corpus(root)` -> {name: Case(path, expected, atol)}; files are named `<name>.<ext>` and put
under root/<name>/ so that each is its own class of an image folder.
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageCms, PngImagePlugin

WHITE = 255.0
# EXIF orientation -> displayed array from the stored one (EXIF 2.3, tag 0x0112; rows = y).
DISPLAY = {
    1: lambda s: s,
    2: lambda s: s[:, ::-1],
    3: lambda s: s[::-1, ::-1],
    4: lambda s: s[::-1, :],
    5: lambda s: s.transpose(1, 0, 2),
    6: lambda s: np.rot90(s, -1),
    7: lambda s: s.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda s: np.rot90(s, 1),
}


@dataclasses.dataclass
class Case:
    path: str
    expected: np.ndarray  # uint8 (H, W, 3) as a viewer shows the file
    atol: int = 0  # levels of tolerance (rounding of alpha blending / colour management)


def _smooth(h, w, seed, channels=3):
    """A smooth, asymmetric test picture (JPEG-friendly)."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(30, 225, (2, 2, channels))
    y, x = np.linspace(0, 1, h)[:, None, None], np.linspace(0, 1, w)[None, :, None]
    img = (low[0, 0] * (1 - y) * (1 - x) + low[0, 1] * (1 - y) * x + low[1, 0] * y * (1 - x)
           + low[1, 1] * y * x)
    img[: h // 3, : w // 4] = 10.0  # a dark corner mark: orientation is visible
    return np.round(img).astype(np.uint8)


def _over_white(rgb, alpha):
    a = alpha.astype(np.float64)[..., None] / 255.0
    return np.round(rgb * a + WHITE * (1 - a)).astype(np.uint8)


def _stroke(h=12, w=10):
    """A dark stroke with an antialiased edge on a fully transparent background."""
    alpha = np.zeros((h, w), np.uint8)
    alpha[2:-2, w // 2 - 1 : w // 2 + 1] = 255
    alpha[2:-2, w // 2 + 1] = 128
    rgb = np.full((h, w, 3), 20, np.uint8)
    rgb[alpha == 0] = 0  # what hides under transparency must not show
    return rgb, alpha


def _decoded_plain(data: bytes) -> np.ndarray:
    """Pillow's pixels as stored (no orientation, no colour management): for lossy files."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _save(im, fmt, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _png_16bit_rgb(array16: np.ndarray) -> bytes:
    """A 16-bit RGB PNG written by hand (Pillow cannot write one): signature, IHDR, IDAT, IEND."""
    h, w, _ = array16.shape

    def chunk(tag, payload):
        return (struct.pack(">I", len(payload)) + tag + payload
                + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF))

    raw = b"".join(b"\x00" + array16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def linear_rgb_profile() -> bytes:
    """An ICC profile with sRGB's primaries and a linear (gamma 1.0) tone curve, built from
    LittleCMS's sRGB profile by replacing its TRC tags and its description."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    count = struct.unpack(">I", srgb[128:132])[0]
    tags = {}
    for i in range(count):
        sig, off, size = struct.unpack(">4sII", srgb[132 + 12 * i : 144 + 12 * i])
        tags[sig] = srgb[off : off + size]
    linear = b"curv" + b"\x00" * 4 + struct.pack(">I", 1) + struct.pack(">H", 0x0100)
    for sig in (b"rTRC", b"gTRC", b"bTRC"):
        tags[sig] = linear
    text = b"linear RGB test profile\x00"
    tags[b"desc"] = (b"desc" + b"\x00" * 4 + struct.pack(">I", len(text)) + text
                     + b"\x00" * (4 + 4 + 2 + 1 + 67))
    tags.pop(b"dmnd", None)
    tags.pop(b"dmdd", None)
    table, data = b"", b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, payload in tags.items():
        payload += b"\x00" * (-len(payload) % 4)
        table += struct.pack(">4sII", sig, offset + len(data), len(payload))
        data += payload
    header = bytearray(srgb[:128])
    header[8:12] = bytes([2, 0x10, 0, 0])  # version 2.1 (desc as textDescriptionType)
    body = struct.pack(">I", len(tags)) + table + data
    header[0:4] = struct.pack(">I", 128 + len(body))
    header[84:100] = b"\x00" * 16  # profile ID (MD5) unset
    return bytes(header) + body


def srgb_encode(linear01: np.ndarray) -> np.ndarray:
    """The sRGB transfer function (IEC 61966-2-1), [0, 1] -> [0, 1]."""
    x = np.asarray(linear01, np.float64)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def write_corpus(root) -> dict[str, Case]:
    """Writes every case under root/<name>/<name>.<ext>; returns {name: Case}."""
    cases: dict[str, Case] = {}

    def put(name, ext, data: bytes, expected, atol=0):
        path = root / name / f"{name}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        cases[name] = Case(str(path), np.asarray(expected, np.uint8), atol)

    # EXIF orientation 1..8 on a 16 x 8 (w x h) JPEG: a viewer shows DISPLAY[o](stored).
    stored = Image.fromarray(_smooth(8, 16, 1))
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        data = _save(stored, "JPEG", quality=95, exif=exif.tobytes())
        put(f"exif{o}", "jpg", data, DISPLAY[o](_decoded_plain(data)))
    # Gray JPEG with EXIF orientation 6 (a viewer shows it 8 wide x 16 tall).
    gray = Image.fromarray(_smooth(8, 16, 2, 1)[..., 0], "L")
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _save(gray, "JPEG", quality=95, exif=exif.tobytes())
    put("gray_jpeg_exif6", "jpg", data, DISPLAY[6](_decoded_plain(data)))
    # Progressive and 4:2:0 JPEG: exactly the decoded samples.
    photo = Image.fromarray(_smooth(16, 24, 3))
    data = _save(photo, "JPEG", quality=85, progressive=True)
    put("progressive", "jpg", data, _decoded_plain(data))
    data = _save(photo, "JPEG", quality=85, subsampling=2)
    put("jpeg_420", "jpg", data, _decoded_plain(data))

    # Transparency: a dark stroke on transparent pixels -> on white.
    rgb, alpha = _stroke()
    want = _over_white(rgb, alpha)
    put("rgba", "png", _save(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "PNG"), want, 1)
    la = np.dstack([rgb[..., 0], alpha])
    put("la", "png", _save(Image.fromarray(la, "LA"), "PNG"), want, 1)
    put("rgba_webp", "webp",
        _save(Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), "WEBP", lossless=True), want, 1)
    hard = np.where(alpha > 0, 255, 0).astype(np.uint8)  # palette/GIF: on/off transparency
    want_hard = _over_white(rgb, hard)
    pal = Image.new("P", (rgb.shape[1], rgb.shape[0]))
    pal.putpalette([0, 0, 0, 20, 20, 20] + [0] * 762)
    pal.putdata(list((hard.reshape(-1) > 0).astype(int)))
    put("palette_trns", "png", _save(pal, "PNG", transparency=0), want_hard)
    put("gif_transparent", "gif", _save(pal, "GIF", transparency=0), want_hard)

    # Palette without transparency, 16-bit gray, 16-bit RGB, CMYK.
    lut = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [250, 250, 0]], np.uint8)
    idx = (np.arange(8 * 10).reshape(8, 10) // 7) % 4
    p = Image.fromarray(idx.astype(np.uint8), "P")
    p.putpalette(lut.reshape(-1).tolist())
    put("palette", "png", _save(p, "PNG"), lut[idx])
    g16 = (np.arange(8 * 10, dtype=np.int64).reshape(8, 10) * 829).astype(np.uint16)
    put("gray16", "png", _save(Image.fromarray(g16), "PNG"),
        np.repeat((g16 >> 8)[..., None], 3, -1).astype(np.uint8))
    rgb16 = np.stack([g16, 65535 - g16, g16 // 2], -1).astype(np.uint16)
    put("rgb16", "png", _png_16bit_rgb(rgb16), (rgb16 >> 8).astype(np.uint8))
    cmyk = _smooth(8, 10, 4, 4)
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    put("cmyk", "tif", _save(Image.fromarray(cmyk, "CMYK"), "TIFF"),
        np.round((255 - c) * (255 - k) / 255), 1)

    # Formats and names: WebP, TIFF, BMP, GIF, a PNG named .jpg, an animation (first frame).
    plain = _smooth(10, 12, 5)
    put("webp", "webp", _save(Image.fromarray(plain), "WEBP", lossless=True), plain)
    put("tiff", "tiff", _save(Image.fromarray(plain), "TIFF"), plain)
    put("bmp", "bmp", _save(Image.fromarray(plain), "BMP"), plain)
    put("png_named_jpg", "jpg", _save(Image.fromarray(plain), "PNG"), plain)
    frames = [Image.fromarray(np.full((6, 6, 3), v, np.uint8)).convert("P") for v in (90, 200)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    put("animated_gif", "gif", gif.getvalue(), _decoded_plain(gif.getvalue()))
    assert _decoded_plain(gif.getvalue())[0, 0, 0] < 150  # the first frame is the dark one

    # Colour: gAMA 1.0 (linear samples) and a linear-RGB ICC profile -> sRGB; sRGB profile kept.
    ramp = np.repeat(np.linspace(0, 255, 12).round().astype(np.uint8)[None, :, None], 3, -1)
    ramp = np.repeat(ramp, 4, 0)
    want = np.round(255 * (ramp / 255.0) ** (1 / 2.2))
    info = PngImagePlugin.PngInfo()
    info.add(b"gAMA", struct.pack(">I", 100000))  # file gamma 1.0: samples are linear light
    put("png_gamma1", "png", _save(Image.fromarray(ramp), "PNG", pnginfo=info), want)
    want = np.round(255 * srgb_encode(ramp / 255.0))
    put("png_icc_linear", "png",
        _save(Image.fromarray(ramp), "PNG", icc_profile=linear_rgb_profile()), want, 3)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    put("jpeg_icc_srgb", "jpg", data := _save(photo, "JPEG", quality=90, icc_profile=srgb),
        _decoded_plain(data))
    return cases
