"""Independent references for the end-to-end tests, from Pillow (the test tools' venv,
scripts/tools.sh): Little CMS through ImageCms, and libavif's AVIF decoder.

  to-srgb IN OUT    IN's pixels converted from its embedded ICC profile to sRGB
                    (perceptual intent, as sharp asks), written as an untagged PNG
  decode IN OUT     any image Pillow reads (AVIF included) → PNG (RGB or RGBA)
  compare IN REF    IN decoded by Pillow against REF (same size): SSIM on luma over
                    mid grey (8×8 windows, stride 4) and the mean alpha error

`decode` and `compare` print one JSON line: {"format", "mode", "size", "icc"} (+ "ssim",
"alpha_error" for compare).
"""

import json
import sys

from PIL import Image, ImageCms


def to_srgb(src: str, dst: str) -> None:
    img = Image.open(src)
    img.load()
    icc = img.info.get("icc_profile")
    if not icc:
        raise SystemExit(f"{src}: no ICC profile")
    mode = "RGBA" if img.mode in ("RGBA", "LA") else "RGB"
    img = img.convert(mode)
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(__import__("io").BytesIO(icc)),
        ImageCms.createProfile("sRGB"),
        mode,
        mode,
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    out = ImageCms.applyTransform(img, transform)
    if mode == "RGBA":
        out.putalpha(img.getchannel("A"))
    out.save(dst, format="PNG")


def decode(src: str, dst: str) -> None:
    img = Image.open(src)
    img.load()
    info = {"format": img.format, "mode": img.mode, "size": list(img.size), "icc": bool(img.info.get("icc_profile"))}
    img.convert("RGBA" if "A" in img.getbands() else "RGB").save(dst, format="PNG")
    print(json.dumps(info))


def luma(img: Image.Image) -> list[float]:
    out = []
    rgba = img.convert("RGBA")
    for r, g, b, a in getattr(rgba, "get_flattened_data", rgba.getdata)():
        k = a / 255.0
        out.append(sum(w * (c * k + 128.0 * (1 - k)) for w, c in ((0.299, r), (0.587, g), (0.114, b))))
    return out


def compare(src: str, ref: str) -> None:
    img, want = Image.open(src), Image.open(ref)
    img.load()
    want.load()
    info = {"format": img.format, "mode": img.mode, "size": list(img.size), "icc": bool(img.info.get("icc_profile"))}
    if img.size != want.size:
        raise SystemExit(f"sizes differ: {img.size} vs {want.size}")
    w, h = img.size
    la, lb = luma(img), luma(want)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    win = min(8, w, h)
    total, count = 0.0, 0
    for y in range(0, h - win + 1, 4):
        for x in range(0, w - win + 1, 4):
            pa = [la[j * w + i] for j in range(y, y + win) for i in range(x, x + win)]
            pb = [lb[j * w + i] for j in range(y, y + win) for i in range(x, x + win)]
            n = len(pa)
            ma, mb = sum(pa) / n, sum(pb) / n
            va = sum(v * v for v in pa) / n - ma * ma
            vb = sum(v * v for v in pb) / n - mb * mb
            cov = sum(p * q for p, q in zip(pa, pb)) / n - ma * mb
            total += ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2))
            count += 1
    alpha_a = img.convert("RGBA").getchannel("A").tobytes()
    alpha_b = want.convert("RGBA").getchannel("A").tobytes()
    info["ssim"] = total / count
    info["alpha_error"] = sum(abs(p - q) for p, q in zip(alpha_a, alpha_b)) / len(alpha_a)
    print(json.dumps(info))


if __name__ == "__main__":
    cmd, src, dst = sys.argv[1:4]
    {"to-srgb": to_srgb, "decode": decode, "compare": compare}[cmd](src, dst)
