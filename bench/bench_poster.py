"""Poster rendering speed: median and p95 over N posters with distinct participants.

Run: /work/venv/bin/python bench/bench_poster.py [N]
Target (issue 4): ≤ 50 ms per poster, PNG bytes included, on one core.
"""

from __future__ import annotations

import io
import statistics
import sys
import time

from PIL import Image

from liebian.campaigns.poster import PosterContent, PosterTemplate, find_font_path, render_poster


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    template = PosterTemplate()
    avatars = []
    for i in range(8):
        buf = io.BytesIO()
        Image.new("RGB", (132, 132), (30 * i, 120, 200 - 20 * i)).save(buf, "JPEG")
        avatars.append(buf.getvalue())

    def content(i: int) -> PosterContent:
        return PosterContent(
            url=f"https://lb.example.com/i/{i:08x}?c=cmp_01J9ZX",
            headline="邀请3位好友，领取1对1试听课",
            body="资深老师一对一诊断学习问题，制定专属学习计划。扫码注册即可预约，名额有限。",
            nickname=f"参与者{i}号",
            avatar=avatars[i % len(avatars)],
        )

    for i in range(5):  # warm the font/background caches, as a running server would be
        render_poster(template, content(i))
    times = []
    size = 0
    for i in range(n):
        start = time.perf_counter()
        size += len(render_poster(template, content(i)))
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    print(f"command: {' '.join([sys.executable, *sys.argv])}")
    print(f"font: {find_font_path()}")
    print(
        f"posters: {n}  size: {template.width}x{template.height}  avg PNG {size / n / 1024:.0f} KiB"
    )
    print(
        f"median {statistics.median(times):.1f} ms  p95 {times[int(n * 0.95) - 1]:.1f} ms  "
        f"max {times[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
