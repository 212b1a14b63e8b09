"""The machine's fp32 peak, measured with an FMA loop (no compiler needed).

x86-64 with AVX-512 or AVX2+FMA: a tiny function (12 independent accumulators
of ``vfmadd231ps`` on the widest vectors the CPU has, zmm or ymm, in a counted
loop) is written as machine code into an executable page and called through
ctypes from one Python thread per core (ctypes releases the GIL, so the threads
run in parallel). Each loop iteration is 12 x lanes x 2 flops (384 on zmm, 192
on ymm). Returns None where that is impossible (other CPUs, no FMA, W^X
policies); the caller then falls back to a large matmul.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import threading
import time
from collections.abc import Callable

ACCUMULATORS = 12


def _fma_zmm(dst: int, a: int, b: int) -> bytes:
    """EVEX ``vfmadd231ps zmm<dst>, zmm<a>, zmm<b>`` (registers 0-15)."""
    p0 = (((~dst >> 3) & 1) << 7) | (1 << 6) | (((~b >> 3) & 1) << 5) | (1 << 4) | 0b10
    p1 = ((~a & 0xF) << 3) | (1 << 2) | 0b01
    return bytes([0x62, p0, p1, 0x48, 0xB8, 0xC0 | ((dst & 7) << 3) | (b & 7)])


def _fma_ymm(dst: int, a: int, b: int) -> bytes:
    """VEX ``vfmadd231ps ymm<dst>, ymm<a>, ymm<b>`` (registers 0-15)."""
    b1 = (((~dst >> 3) & 1) << 7) | (1 << 6) | (((~b >> 3) & 1) << 5) | 0b00010
    b2 = ((~a & 0xF) << 3) | (1 << 2) | 0b01
    return bytes([0xC4, b1, b2, 0xB8, 0xC0 | ((dst & 7) << 3) | (b & 7)])


def _code(fma: Callable[[int, int, int], bytes]) -> bytes:
    body = b"".join(fma(d, 12, 13) for d in range(ACCUMULATORS))
    loop = body + b"\x48\xff\xcf"  # dec rdi
    jump = -(len(loop) + 2)
    return (
        b"\xc5\xfc\x77"  # vzeroall: zero inputs, no denormal slow paths
        + loop
        + bytes([0x75, jump & 0xFF])  # jnz loop
        + b"\xc5\xf8\x77\xc3"
    )  # vzeroupper; ret


def cpuinfo(key: str) -> str:
    """The value of the first ``key`` line of /proc/cpuinfo ("" where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def _variant() -> tuple[Callable[[int, int, int], bytes], int] | None:
    """The FMA encoder for the widest vectors this CPU has, and its fp32 lanes."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    flags = set(cpuinfo("flags").split())
    if "avx512f" in flags:
        return _fma_zmm, 16
    if {"avx2", "fma"} <= flags:
        return _fma_ymm, 8
    return None


def _timed(
    fn: Callable[[int], None],
    iters: int,
    barrier: threading.Barrier,
    spans: list[float],
) -> None:
    barrier.wait()
    t0 = time.perf_counter()
    fn(iters)
    spans.append(time.perf_counter() - t0)


def fma_peak(threads: int, seconds: float = 0.3) -> float | None:
    """GFLOP/s of ``threads`` threads running the FMA loop, or None if unavailable."""
    variant = _variant()
    if variant is None:
        return None
    encoder, lanes = variant
    flops_per_iter = ACCUMULATORS * lanes * 2
    code = _code(encoder)
    try:
        page = mmap.mmap(
            -1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
        )
    except (OSError, ValueError):
        return None
    page.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
    fn = ctypes.CFUNCTYPE(None, ctypes.c_uint64)(addr)
    fn(1000)  # warm up (and fault in the page)
    iters = 1 << 22
    t = time.perf_counter()
    fn(iters)
    per_iter = (time.perf_counter() - t) / iters
    iters = max(1000, int(seconds / per_iter))
    best = 0.0
    for _ in range(3):
        barrier = threading.Barrier(threads + 1)
        spans: list[float] = []
        pool = [
            threading.Thread(target=_timed, args=(fn, iters, barrier, spans))
            for _ in range(threads)
        ]
        for th in pool:
            th.start()
        barrier.wait()
        for th in pool:
            th.join()
        best = max(best, threads * iters * flops_per_iter / max(spans) / 1e9)
    return best


if __name__ == "__main__":
    for n in (1, 2):
        print(f"{n} thread(s): {fma_peak(n)} GFLOP/s")
