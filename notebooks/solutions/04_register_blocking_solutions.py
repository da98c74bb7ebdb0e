"""Reference answers to notebook 04's exercises: read them after trying, not before.

Exercise 1: any pair that fits the registers with fewer than L x P accumulators, e.g. 1 x VLEN
(one accumulator). Both kinds of limit then bind: 1 accumulator of the L x P needed, and
1/1 + 1/1 = 2 loads per FMA (one of them a whole vector) where the load ports allow LOAD_PORTS / P
(VECTOR_LOAD_PORTS / P of whole vectors). On a core with 2 pipes, L = 4, 3 load ports of which 2
take whole vectors, the model gives min(1/8, 3/4, 1) = 1/8 of the peak: the accumulators' limit
is the tighter one, and the micro-kernel alone usually lands near it.

Exercise 2: the three limits with AVX2's numbers (8 lanes, 16 registers, and this machine's pipes)
pick the tiles ``model_tiles`` returns; ``kernels.DEFAULT_MICROTILE["avx2"]`` is one of them when
the model and the package agree. Measure a few around it: the map is the final word.

Exercise 3: the right edge of each MR-row block (the last N mod NR columns) in registers too:
``EDGE_BODY`` below, put into regblock.c by ``edge_source``, as the notebook's cell does. C is then
loaded and stored once per block of k, not once per k as in rung 3's loop; the last vector is
masked with kr_load_n / kr_store_n. Run this file to check it with
``krypton.exercises.check_edge_kernel``.
"""

from krypton.notebook import c_source

EDGE_CALL = "kr_edge_block(i, i + KR_MR, j, j1, k0, k1, A, rsa, csa, B, rsb, C, ldc);"
"""The call in regblock.c that computes the right edge of an MR-row block with rung 3's loop."""

EDGE_SIGNATURE = """static void kr_edge_microkernel(int64_t kc, int64_t n, const float *restrict A,
                                int64_t rsa, int64_t csa, const float *restrict B, int64_t rsb,
                                float *restrict C, int64_t ldc)
"""

EDGE_BODY = """{
    /* C[0:MR, 0:n] += A[0:MR, 0:kc] * B[0:kc, 0:n], n < KR_NR: `full` whole vectors, then
     * one vector of `rest` lanes, all of them in registers for the whole k loop. */
    const int64_t full = n / KR_VLEN, rest = n % KR_VLEN, vectors = full + (rest > 0);
    kr_vec acc[KR_MR][KR_NV];
    for (int r = 0; r < KR_MR; ++r) {
        for (int64_t v = 0; v < full; ++v)
            acc[r][v] = kr_load(C + r * ldc + v * KR_VLEN);
        if (rest)
            acc[r][full] = kr_load_n(C + r * ldc + full * KR_VLEN, rest);
    }
    for (int64_t k = 0; k < kc; ++k) {
        kr_vec b[KR_NV];
        for (int64_t v = 0; v < full; ++v)
            b[v] = kr_load(B + k * rsb + v * KR_VLEN);
        if (rest)
            b[full] = kr_load_n(B + k * rsb + full * KR_VLEN, rest);
        for (int r = 0; r < KR_MR; ++r) {
            const kr_vec a = kr_set1(A[r * rsa + k * csa]);
            for (int64_t v = 0; v < vectors; ++v)
                acc[r][v] = kr_fma(a, b[v], acc[r][v]);
        }
    }
    for (int r = 0; r < KR_MR; ++r) {
        for (int64_t v = 0; v < full; ++v)
            kr_store(C + r * ldc + v * KR_VLEN, acc[r][v]);
        if (rest)
            kr_store_n(C + r * ldc + full * KR_VLEN, acc[r][full], rest);
    }
}
"""


def edge_source(body: str = EDGE_BODY) -> str:
    """regblock.c as ``kr_sgemm_mine``, its right edges on ``kr_edge_microkernel`` with ``body``."""
    source = c_source("regblock").replace("kr_sgemm_regblock", "kr_sgemm_mine")
    call = ("if (j < j1)\n                        kr_edge_microkernel(k1 - k0, j1 - j, "
            "A + i * rsa + k0 * csa, rsa, csa,\n                                            "
            "B + k0 * rsb + j, rsb, C + i * ldc + j, ldc);")
    assert EDGE_CALL in source, "regblock.c changed: update EDGE_CALL"
    source = source.replace(EDGE_CALL, call)
    return source.replace("int kr_sgemm_mine(", EDGE_SIGNATURE + body + "\n" + "int kr_sgemm_mine(", 1)


def too_few_accumulators(vlen: int, vregs: int, needed: int) -> tuple[int, int]:
    """A micro-tile (mr, nr) that fits ``vregs`` registers with fewer than ``needed`` accumulators."""
    if needed < 2 or vregs < 3:
        raise ValueError("needs at least 2 accumulators asked for and 3 registers")
    return 1, vlen          # 1 accumulator, 1 vector of B, 1 broadcast of A: 3 registers


def model_tiles(vlen: int, vregs: int, pipes: int, latency: int = 4, load_ports: int = 3,
                vector_load_ports: int = 2) -> list[tuple[int, int]]:
    """Every (mr, nr) that meets the limits of notebook 04's model, most load slack first.

    Loads as the source asks for them, per FMA: 1/mr whole vectors of B, 1/nv broadcasts of A."""
    tiles = []
    for nv in range(1, 9):
        for mr in range(1, 33):
            fits = mr * nv + nv + 1 <= vregs
            loads_fit = (pipes * (1 / mr + 1 / nv) <= load_ports
                         and pipes / mr <= vector_load_ports)
            if fits and mr * nv >= latency * pipes and loads_fit:
                tiles.append((1 / mr + 1 / nv, mr, nv * vlen))
    return [(mr, nr) for _, mr, nr in sorted(tiles)]


if __name__ == "__main__":
    from krypton import exercises

    print(exercises.check_edge_kernel(edge_source()))
