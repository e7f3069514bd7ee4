"""Van Westendorp with NMS on your own file, in a notebook or a script.

    python examples/van_westendorp.py path/to/vw.csv [path/to/respondents.csv]
"""

import sys

import numpy as np

from wtp.io import attach_segments, read_table, validate_respondents, validate_vw
from wtp.vanwestendorp import van_westendorp

answers = validate_vw(read_table(sys.argv[1] if len(sys.argv) > 1 else "surveys/demo/vw.csv"))
respondents = validate_respondents(read_table(sys.argv[2])) if len(sys.argv) > 2 else None
if respondents is None and len(sys.argv) == 1:
    respondents = validate_respondents(read_table("surveys/demo/respondents.csv"))
answers = attach_segments(answers, respondents)

result = van_westendorp(answers, bootstrap=500, rng=np.random.default_rng(1))
print(result.summary().to_string(index=False))
for segment in result.segments:
    low, high = result.acceptable_range(segment)
    print(f"{segment}: acceptable {low:.2f}–{high:.2f}")
if result.has_nms:
    print("purchase probability at 49 / 69 / 99:", result.demand("all", [49, 69, 99]).round(3))
