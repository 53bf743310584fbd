#!/usr/bin/env python3
"""How often a Countdown policy's operations are wrong, from `distbelief search` output.

  scripts/countdown_ops.py problems N SEED > problems.jsonl
      N solvable 3-number problems (numbers 1-100, a reachable target 10-999), seeded.
  build/tools/distbelief search --checkpoint C --strategy samples --samples 0 --problems problems.jsonl > out.jsonl
  scripts/countdown_ops.py score out.jsonl [more.jsonl ...]
      per file: problems verified, and every "a op b=r" in the policy's whole text (the search's
      dead ends included) checked: wrong results per operator, and wrong results equal to the
      target.
  scripts/countdown_ops.py compare a.jsonl b.jsonl
      two policies' outputs on the same problems, line by line: each one's verified count and
      mean tokens, the problems only one of them solved, and McNemar's z for the difference
      (|z| > 2: beyond noise at about 95%); per policy, its failures by kind: a claim ("r>T#")
      of a result that is not the target, the target marked a dead end ("T>T!"), or other.
  scripts/countdown_ops.py starts out.jsonl [more.jsonl ...]
      per file: whether each text's first step leaves numbers from which the target can still be
      reached, counted against how the line ended (verified, a false claim, another failure).
"""
import itertools
import json
import math
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


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def false_claim(j):
    """The text declares a result that is not the target ("r>T#" with r != T)."""
    return any(r != t for r, t in re.findall(r"=(\d+)>(\d+)#", j["text"]))


def failure_kinds(rows):
    kinds = {"false claim": 0, "target marked a dead end": 0, "other": 0}
    for j in rows:
        if "text" not in j or j["verified"]:
            continue
        if false_claim(j):
            kinds["false claim"] += 1
        elif any(r == t == str(j["target"]) for r, t in re.findall(r"=(\d+)>(\d+)!", j["text"])):
            kinds["target marked a dead end"] += 1
        else:
            kinds["other"] += 1
    return kinds


def compare(path_a, path_b):
    a, b = load(path_a), load(path_b)
    if len(a) != len(b) or any((x.get("numbers"), x.get("target")) != (y.get("numbers"), y.get("target"))
                               for x, y in zip(a, b)):
        sys.stderr.write(f"compare: {path_a} and {path_b} are not answers to the same problems in the same order\n")
        return 1
    for path, rows in ((path_a, a), (path_b, b)):
        if any("verified" not in j for j in rows):
            sys.stderr.write(f"compare: {path} has a line without \"verified\" (not `distbelief search` output)\n")
            return 1
    for path, rows in ((path_a, a), (path_b, b)):
        ok = sum(bool(j.get("verified")) for j in rows)
        tokens = sum(j.get("tokens", 0) for j in rows) / max(len(rows), 1)
        kinds = ", ".join(f"{k} {v}" for k, v in failure_kinds(rows).items())
        print(f"{path}: {ok} of {len(rows)} verified ({100.0 * ok / max(len(rows), 1):.1f}%), "
              f"{tokens:.0f} tokens a problem; failures: {kinds}")
    only_a = sum(bool(x.get("verified")) and not y.get("verified") for x, y in zip(a, b))
    only_b = sum(bool(y.get("verified")) and not x.get("verified") for x, y in zip(a, b))
    z = (only_b - only_a) / math.sqrt(only_a + only_b) if only_a + only_b else 0.0
    print(f"solved by the first only: {only_a}, by the second only: {only_b}; McNemar z (second - first) = {z:+.2f}")
    return 0


def first_step_keeps_target(j):
    """True/False: the first "a op b=" of the text leaves the target reachable; None: no legal first step."""
    m = STEP.search(j.get("text", ""))
    if not m:
        return None
    a, op, b = int(m.group(1)), m.group(2), int(m.group(3))
    left = list(j["numbers"])
    for x in (a, b):
        if x not in left:
            return None
        left.remove(x)
    r = apply(a, op, b)
    if r is None:
        return None
    return j["target"] in reachable(left + [r])


def starts(path):
    counts = {}
    for j in load(path):
        if "text" not in j:
            continue
        if j["verified"]:
            end = "verified"
        elif false_claim(j):
            end = "false claim"
        else:
            end = "other failure"
        keeps = {True: "target reachable", False: "target unreachable", None: "no legal first step"}[
            first_step_keeps_target(j)]
        counts[(end, keeps)] = counts.get((end, keeps), 0) + 1
    cells = "; ".join(f"{end}, first step leaves the {keeps}: {n}" if keeps != "no legal first step"
                      else f"{end}, {keeps}: {n}" for (end, keeps), n in sorted(counts.items()))
    print(f"{path}: {cells}")


def main(argv):
    if len(argv) == 4 and argv[1] == "problems":
        problems(int(argv[2]), int(argv[3]))
    elif len(argv) >= 3 and argv[1] == "score":
        for p in argv[2:]:
            score(p)
    elif len(argv) >= 3 and argv[1] == "starts":
        for p in argv[2:]:
            starts(p)
    elif len(argv) == 4 and argv[1] == "compare":
        return compare(argv[2], argv[3])
    else:
        sys.stderr.write(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
