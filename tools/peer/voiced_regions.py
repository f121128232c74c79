"""Statistics over voiced and unvoiced frames apart (eGeMAPS computes its spectral parameters
so) beside the distribution-length input, kernel ridge by actor with speaker normalisation, on
rows rebuilt as ser builds them (tools/peer/krr_grid.py's recipe), screened before building
them into ser (docs/RESULTS.md, "The distribution input"):

    python tools/peer/voiced_regions.py F [BLOCK] [SEED]

F: the 65-column prosody file. BLOCK, the columns whose mean and deviation are taken over each
clip's voiced frames (pyin's flag) and, apart, over its unvoiced ones: `mfcc` (default, the 40
MFCCs), `mfccN` (the first N), `all` (every column but f0 and the flag), each also with
`-voiced` (voiced frames only); several, comma-separated. The new block is a fourth part of
the kernel, standardised within each actor like the others, each of its columns weighted by a
scale (0: the block left out, ser's input) relative to a statistics column's; the block and
scale are also chosen inside each fold on its training actors (4 inner folds by actor). SEED:
the projection's (7). Needs numpy, scikit-learn.
"""
import sys
import numpy as np
from krr_grid import Rows, nested_folds, per_actor

SCALES = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


def region_stats(fr, mask):
    """each column's mean and deviation over the frames where mask holds (zeros without any)."""
    x = fr[mask]
    return np.concatenate([x.mean(0), x.std(0)]) if len(x) else np.zeros(2 * fr.shape[1])


def main():
    blocks = (sys.argv[2] if len(sys.argv) > 2 else "mfcc").split(",")
    r = Rows(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    voiced = r.names.index("voiced")
    def columns(block):
        cols = block.removesuffix("-voiced")
        return ([i for i, n in enumerate(r.names) if n not in ("f0", "voiced")] if cols == "all"
                else [r.names.index(f"mfcc_{i}") for i in range(int(cols.removeprefix("mfcc") or 40))])
    extra = {}
    for bl in blocks:
        cols, rows = columns(bl), []
        for i in r.keep:
            fr = r.frames[i, : r.lengths[i]]
            v = fr[:, voiced] > 0.5
            rows.append(np.concatenate([region_stats(fr[:, cols], v)] + ([] if bl.endswith("-voiced") else [region_stats(fr[:, cols], ~v)])))
        extra[bl] = per_actor(np.array(rows), r.a)
        print(f"{bl}: {extra[bl].shape[1]} columns", flush=True)
    grid = [(bl, sc) for bl in blocks for sc in SCALES]

    def accs(tr, te):
        """accuracy on te for every (block, scale), fitted on tr (each part scaled on tr)."""
        d = [r.distances(x, tr, te) for x in r.parts]
        de = {bl: r.distances(x, tr, te) for bl, x in extra.items()}
        # ser's weights (the halves equal, the length 4 times a statistics column), and the new
        # block's columns s times a statistics column each; the kernel's width grows with them
        c = [r.half / r.ns, r.half / r.ne, r.half / r.ns * 16]
        return {(bl, s): r.accuracy(tr, te, zip(c + [r.half / r.ns * s * s], d + [de[bl]]), 1.0 / (r.width + s * s * extra[bl].shape[1]), 0.1) for bl, s in grid}
    nested_folds(accs, grid, r.a, lambda key: f"{key[0]} scale {key[1]}")


if __name__ == "__main__":
    main()
