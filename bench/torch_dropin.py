"""fastdrop.torch against torch.nn.functional.dropout on CPU tensors: the
table of ``fastdrop bench-torch`` (:mod:`fastdrop._benchmark.torch_dropin`).

    python bench/torch_dropin.py --format markdown
"""

import sys

from fastdrop._benchmark.torch_dropin import main

if __name__ == "__main__":
    sys.exit(main(prog="bench/torch_dropin.py"))
