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
"""


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
