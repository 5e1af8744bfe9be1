"""
The loss curve of a run as SVG (and PNG where rsvg-convert is installed: apt-get install
librsvg2-bin), with no plotting library: python3 -m bitnet_train.plot runs/x/metrics.json loss.svg
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

W, H, L, R, T, B = 720, 420, 70, 20, 40, 50


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    step = (hi - lo) / n
    return [lo + i * step for i in range(n + 1)]


def render(metrics: dict) -> str:
    curve = metrics["curve"]
    xs = [p["tokens"] / 1e6 for p in curve]
    train = [(p["tokens"] / 1e6, p["train_loss"]) for p in curve]
    held = [(p["tokens"] / 1e6, p["heldout_loss"]) for p in curve if "heldout_loss" in p]
    ys = [y for _, y in train + held]
    x0, x1 = 0.0, max(xs) or 1.0
    y0, y1 = min(ys) * 0.95, max(ys) * 1.02

    def px(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * (W - L - R)

    def py(y: float) -> float:
        return H - B - (y - y0) / (y1 - y0) * (H - T - B)

    def path(points: list[tuple[float, float]]) -> str:
        return " ".join(f"{'M' if i == 0 else 'L'}{px(x):.1f},{py(y):.1f}" for i, (x, y) in enumerate(points))

    title = (f"BitNet b1.58, {metrics['parameters'] / 1e6:.2f} M parameters, preset {metrics['preset']}: "
             f"held-out loss {metrics['final_heldout_loss']:.3f}")
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f"<title>Loss curve. {title}</title>",
           f'<rect width="{W}" height="{H}" fill="white"/>']
    for y in _ticks(y0, y1):
        out.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{y:.2f}</text>')
    for x in _ticks(x0, x1):
        out.append(f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x:.2f}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">tokens seen (millions)</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
               'text-anchor="middle">cross-entropy (nats/token)</text>')
    out.append(f'<text x="{L}" y="22" font-size="14">{title}</text>')
    out.append(f'<path d="{path(train)}" fill="none" stroke="#1f77b4" stroke-width="2"/>')
    if held:
        out.append(f'<path d="{path(held)}" fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>')
        for x, y in held:
            out.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="#d62728"/>')
    out.append(f'<line x1="{W - 200}" x2="{W - 170}" y1="{T + 10}" y2="{T + 10}" stroke="#1f77b4" stroke-width="2"/>'
               f'<text x="{W - 164}" y="{T + 14}">train (moving average)</text>')
    out.append(f'<line x1="{W - 200}" x2="{W - 170}" y1="{T + 28}" y2="{T + 28}" stroke="#d62728" '
               f'stroke-width="2" stroke-dasharray="6 4"/><text x="{W - 164}" y="{T + 32}">held out</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit("usage: python3 -m bitnet_train.plot metrics.json loss.svg")
    metrics = json.loads(Path(sys.argv[1]).read_text())
    svg = Path(sys.argv[2])
    svg.write_text(render(metrics))
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", str(svg), "-o", str(svg.with_suffix(".png"))], check=True)
        print(f"wrote {svg} and {svg.with_suffix('.png')}")
    else:
        print(f"wrote {svg} (no rsvg-convert for the PNG: apt-get install librsvg2-bin)")


if __name__ == "__main__":
    main()
