#!/usr/bin/env python3
"""How often a Countdown policy's operations are wrong, from `distbelief search` output.

  scripts/countdown_ops.py problems N SEED > problems.jsonl
      N solvable 3-number problems (numbers 1-100, a reachable target 10-999), seeded.
  build/tools/distbelief search --checkpoint C --strategy samples --samples 0 --problems problems.jsonl > out.jsonl
  scripts/countdown_ops.py score out.jsonl [more.jsonl ...]
      per file: problems verified, and every "a op b=r" in the policy's whole text (the search's
      dead ends included) checked: wrong results per operator, and wrong results equal to the
      target.
"""
import itertools
import json
import random
import re
import sys

STEP = re.compile(r"(\d+)([-+*/])(\d+)=(\d+)")


def apply(a, op, b):
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "-":
        return a - b if a >= b else None
    return a // b if b and a % b == 0 else None


def reachable(nums):
    if len(nums) == 1:
        return {nums[0]}
    out = set()
    for i, j in itertools.permutations(range(len(nums)), 2):
        rest = [nums[k] for k in range(len(nums)) if k not in (i, j)]
        for op in "+-*/":
            r = apply(nums[i], op, nums[j])
            if r is not None:
                out |= reachable(rest + [r])
    return out


def problems(n, seed):
    rng = random.Random(seed)
    made = 0
    while made < n:
        nums = [rng.randint(1, 100) for _ in range(3)]
        targets = sorted(t for t in reachable(nums) if 10 <= t <= 999)
        if not targets:
            continue
        print(json.dumps({"numbers": nums, "target": rng.choice(targets)}))
        made += 1


def score(path):
    solved = total = ops = wrong = at_target = 0
    by_op = {op: [0, 0] for op in "+-*/"}
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if "text" not in j:
                continue
            total += 1
            solved += bool(j["verified"])
            for a, op, b, r in STEP.findall(j["text"]):
                a, b, r = int(a), int(b), int(r)
                right = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else (a / b if b else None)
                ops += 1
                by_op[op][1] += 1
                if right != r:
                    wrong += 1
                    by_op[op][0] += 1
                    at_target += r == j["target"]
    cells = ", ".join(f"{op} {w}/{n} ({100.0 * w / max(n, 1):.0f}%)" for op, (w, n) in by_op.items())
    print(f"{path}: {solved} of {total} verified; {wrong} of {ops} operations wrong ({100.0 * wrong / max(ops, 1):.1f}%): "
          f"{cells}; {at_target} wrong results equal to the target")


def main(argv):
    if len(argv) == 4 and argv[1] == "problems":
        problems(int(argv[2]), int(argv[3]))
    elif len(argv) >= 3 and argv[1] == "score":
        for p in argv[2:]:
            score(p)
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
