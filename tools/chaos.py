#!/usr/bin/env python3
"""The chaos soak: a Downpour run as real processes (distbelief launch, gRPC, 2 shards, 3 replicas)
while this script, every 10-20 s for --minutes, kills -9 or SIGSTOPs (2-8 s) a random shard or
replica, or cuts one off the network for 4-10 s (nftables drops every packet its sockets send or
receive, found by a net_cls cgroup tag; skipped where nft or net_cls is missing or not permitted). Then it proves from the push ledgers (distributed.ledger_dir) that no acknowledged push
was lost or applied twice, that no process hung or survived, and that the run reached the
accuracy of a fault-free run of the same job (within --tolerance points), which it runs first.

Ledgers. Each replica client writes "ack SHARD CLIENT SEQ VERSION DUP" per push a shard
acknowledged (and "replay ..." per push it sent again to a restarted shard); each shard process
writes "start VERSION TIME" and then "CLIENT SEQ VERSION TIME" per push it applied (" log" added
for one applied again from its push log after a restart). A shard's
state at the end is its last process's applies on top of the checkpoint it started from, which
holds its predecessor's applies up to that version, and so on back to version 0: that chain must
hold versions 1..N exactly once each, every (client, seq) at most once, and every acknowledged
(client, seq) of that shard.

Usage (from the repository root):
  tools/chaos.py --bin build/tools/distbelief [--minutes 5] [--epochs 30] [--out runs/chaos] [--cover]
Prints a report (also written to OUT/report.md) and exits non-zero if any check fails.
"""
import argparse
import collections
import os
import random
import re
import signal
import subprocess
import sys
import time


def launch(args, run_dir, extra, log_path):
    cmd = [args.bin, "launch", "--config", args.config, "--overwrite",
           "--set", f'train.run_dir="{run_dir}"', "--set", f"train.epochs={args.epochs}"] + extra
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True), log


def accuracy(log_path):
    m = re.findall(r"test accuracy: ([0-9.]+)%", open(log_path).read())
    return float(m[-1]) if m else None


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def children(log_path):
    """The live shard and replica processes the launcher has started: {(role, index): pid}."""
    live = {}
    for m in re.finditer(r"started (shard|replica) (\d+) pid (\d+)", open(log_path).read()):
        live[(m.group(1), int(m.group(2)))] = int(m.group(3))
    return {k: p for k, p in live.items() if alive(p)}


NFT_TABLE = "distbelief_chaos"
NET_CLS = "/sys/fs/cgroup/net_cls"           # cgroup v1's net_cls hierarchy (mounted here if absent)
CUT_GROUP = os.path.join(NET_CLS, "distbelief_chaos")
CUT_CLASSID = 0x00100001                     # what nft's `meta cgroup` sees for its sockets


def nft(*args):
    return subprocess.run(["nft", *args], capture_output=True, text=True).returncode == 0


def net_cls_root():
    """Where the net_cls controller is mounted: found in /proc/mounts, else mounted at NET_CLS."""
    for line in open("/proc/mounts"):
        f = line.split()
        if f[2] == "cgroup" and "net_cls" in f[3].split(","):
            return f[1]
    try:
        os.makedirs(NET_CLS, exist_ok=True)
    except OSError:
        return None
    r = subprocess.run(["mount", "-t", "cgroup", "-o", "net_cls", "net_cls", NET_CLS], capture_output=True)
    return NET_CLS if r.returncode == 0 else None


def can_cut():
    """Network cuts need a net_cls cgroup to tag a process's sockets and nftables to drop what they
    send and receive: both made (and the nft table removed) here. Returns the cgroup or None."""
    global CUT_GROUP
    root = net_cls_root()
    if root is None or not nft("add", "table", "inet", NFT_TABLE + "_probe"):
        return None
    nft("delete", "table", "inet", NFT_TABLE + "_probe")
    CUT_GROUP = os.path.join(root, "distbelief_chaos")
    try:
        os.makedirs(CUT_GROUP, exist_ok=True)
        with open(os.path.join(CUT_GROUP, "net_cls.classid"), "w") as f:
            f.write(str(CUT_CLASSID))
    except OSError:
        return None
    return CUT_GROUP


def cut(pid, seconds):
    """Process `pid` cut off the network for `seconds`: moved into the tagged cgroup (every socket
    it has or opens carries the tag) while nftables drops every packet such a socket sends or
    receives, so its peers see silence, not a refused connection, whatever ports it uses; then the
    rules removed and the process moved back. Returns the packets dropped (0: the cut did not
    bite)."""
    root = os.path.dirname(CUT_GROUP)
    nft("add", "table", "inet", NFT_TABLE)
    for chain, hook in (("output", "output"), ("input", "input")):
        nft("add", "chain", "inet", NFT_TABLE, chain, "{ type filter hook %s priority 0; }" % hook)
        nft("add", "rule", "inet", NFT_TABLE, chain, "meta", "cgroup", str(CUT_CLASSID), "counter", "drop")
    dropped = 0
    try:
        with open(os.path.join(CUT_GROUP, "cgroup.procs"), "w") as f:
            f.write(str(pid))
        time.sleep(seconds)
    except OSError:
        pass  # it died meanwhile
    finally:
        listing = subprocess.run(["nft", "list", "table", "inet", NFT_TABLE], capture_output=True, text=True).stdout
        dropped = sum(int(n) for n in re.findall(r"counter packets (\d+)", listing))
        nft("delete", "table", "inet", NFT_TABLE)
        try:
            with open(os.path.join(root, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError:
            pass
    return dropped


def read_ledgers(ledger_dir):
    shards = collections.defaultdict(list)  # shard -> [(start_version, start_ns, [(client, seq, version, ns)])]
    acks = collections.defaultdict(set)     # shard -> {(client, seq)}
    counts = collections.Counter()
    for name in sorted(os.listdir(ledger_dir)):
        path = os.path.join(ledger_dir, name)
        lines = open(path).read().splitlines()
        if name.startswith("shard-"):
            s = int(name.split("-")[1])
            head = lines[0].split()
            assert head[0] == "start", f"{name}: no start line"
            applied = []
            for line in lines[1:]:
                f = line.split()  # CLIENT SEQ VERSION TIME [log]
                applied.append((f[0], int(f[1]), int(f[2]), int(f[3]), len(f) > 4))
            shards[s].append((int(head[1]), int(head[2]), applied))
        elif name.startswith("replica-"):
            for line in lines:
                kind, s, c, q, v, dup = line.split()
                counts[kind] += 1
                counts["duplicate " + kind] += int(dup)
                acks[int(s)].add((c, int(q)))
    return shards, acks, counts


def check_ledgers(ledger_dir, report):
    shards, acks, counts = read_ledgers(ledger_dir)
    ok = True
    total_applied = total_lost_branch = total_from_log = 0
    for s in sorted(shards):
        incs = sorted(shards[s], key=lambda inc: inc[1])  # by start time
        chain, bound = [], None
        for start, _, applied in reversed(incs):
            take = [a for a in applied if bound is None or a[2] <= bound]
            total_lost_branch += len(applied) - len(take)
            chain.extend(take)
            bound = start if bound is None else min(bound, start)
            if bound == 0:
                break
        total_from_log += sum(1 for a in chain if a[4])
        versions = sorted(a[2] for a in chain)
        ids = collections.Counter((a[0], a[1]) for a in chain)
        doubled = [i for i, n in ids.items() if n > 1 and i[0] != "0"]
        gaps = versions != list(range(1, len(versions) + 1))
        lost = [i for i in acks[s] if i not in ids]
        total_applied += len(chain)
        report.append(f"- shard {s}: {len(incs)} processes, final version {len(versions)}; "
                      f"{len(acks[s])} push ids acknowledged, {len(lost)} lost, {len(doubled)} applied twice"
                      f"{', versions not 1..N' if gaps else ''}")
        if lost or doubled or gaps or incs[0][0] != 0:
            ok = False
            report.append(f"  FAIL: lost {lost[:5]} doubled {doubled[:5]} gaps {gaps} first start {incs[0][0]}")
    report.append(f"- replicas: {counts['ack']} acknowledgements ({counts['duplicate ack']} as duplicates), "
                  f"{counts['replay']} pushes sent again to restarted shards ({counts['duplicate replay']} "
                  f"already held by the restarted shard); {total_lost_branch} applies undone by shard restarts "
                  f"and redone ({total_from_log} from the shards' push logs, the rest from the replicas' copies)")
    return ok, shards


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="build/tools/distbelief")
    ap.add_argument("--config", default="configs/chaos.toml")
    ap.add_argument("--minutes", type=float, default=5.0, help="faults for this long (the run must outlast it)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--interval", default="10,20", help="seconds between faults: MIN,MAX")
    ap.add_argument("--tolerance", type=float, default=1.0, help="accuracy points the chaos run may lose")
    ap.add_argument("--out", default="runs/chaos")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-resume", type=float, default=2.0,
                    help="seconds from a shard's kill -9 to its next pushed update, at most")
    ap.add_argument("--cover", action="store_true",
                    help="the first faults are one of each kind (kill -9 / SIGSTOP / network cut of a shard / "
                         "a replica)")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    lo, hi = (float(x) for x in args.interval.split(","))
    os.makedirs(args.out, exist_ok=True)
    report = [f"# Chaos soak: {args.config}, {args.epochs} epochs, faults every {lo:g}-{hi:g} s for "
              f"{args.minutes:g} min"]
    ok = True

    # 1. The same job without faults: its accuracy and time.
    base_dir = os.path.join(args.out, "baseline")
    t0 = time.time()
    p, log = launch(args, base_dir, ["--set", "distributed.ledger_dir=\"\""], os.path.join(args.out, "baseline.log"))
    p.wait()
    log.close()
    base_seconds = time.time() - t0
    base_acc = accuracy(os.path.join(args.out, "baseline.log"))
    if p.returncode != 0 or base_acc is None:
        print(open(os.path.join(args.out, "baseline.log")).read()[-2000:])
        sys.exit("chaos: the fault-free run failed")

    # 2. The job under faults.
    chaos_dir = os.path.join(args.out, "run")
    ledger = os.path.join(args.out, "ledger")
    subprocess.run(["rm", "-rf", ledger])
    log_path = os.path.join(args.out, "run.log")
    t0 = time.time()
    p, log = launch(args, chaos_dir, ["--set", f'distributed.ledger_dir="{ledger}"'], log_path)
    cuts = can_cut()
    if not cuts:
        report.append("(no network cuts: nftables or cgroup v1's net_cls is missing or not permitted here)")
    events = []
    kills = {}  # shard index -> time of its last kill -9 (for the resume time)
    cut_drops = []  # (role, index, seconds, packets dropped) per network cut
    deadline = t0 + args.minutes * 60
    limit = t0 + max(3 * base_seconds, args.minutes * 60 + 2 * base_seconds) + 120  # a hang, not a slow run
    next_fault = t0 + rng.uniform(lo, hi)
    hung = False
    while p.poll() is None:
        now = time.time()
        if now > limit:
            hung = True
            os.killpg(p.pid, signal.SIGKILL)
            break
        if now < next_fault or now > deadline:
            time.sleep(0.2)
            continue
        live = children(log_path)
        if not live:
            next_fault = now + 1
            continue
        (role, index), pid = rng.choice(sorted(live.items()))
        kinds = ["kill -9", "SIGSTOP"] + (["cut"] if cuts else [])
        kind = rng.choice(kinds)
        cover = [("shard", "kill -9"), ("replica", "kill -9"), ("shard", "SIGSTOP"), ("replica", "SIGSTOP")]
        if cuts:
            cover[2:2] = [("replica", "cut"), ("shard", "cut")]
        if args.cover and len(events) < len(cover):  # one of each kind first
            want_role, kind = cover[len(events)]
            of_role = sorted((k, p) for k, p in live.items() if k[0] == want_role)
            if not of_role:
                next_fault = now + 1
                continue
            (role, index), pid = rng.choice(of_role)
        if kind == "kill -9":
            os.kill(pid, signal.SIGKILL)
            if role == "shard":
                kills.setdefault(index, []).append(now)
            events.append((now - t0, role, index, kind, 0.0))
        elif kind == "cut":
            pause = rng.uniform(4, 10)
            dropped = cut(pid, pause)
            events.append((now - t0, role, index, kind, pause))
            cut_drops.append((role, index, pause, dropped))
        else:
            pause = rng.uniform(2, 8)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(pause)
            if alive(pid):
                os.kill(pid, signal.SIGCONT)
            events.append((now - t0, role, index, kind, pause))
        next_fault = time.time() + rng.uniform(lo, hi)
    log.close()
    seconds = time.time() - t0
    acc = accuracy(log_path)
    fault_window = min(seconds, args.minutes * 60)

    # 3. Checks.
    report.append("")
    report.append(f"Fault-free run: {base_seconds:.0f} s, test accuracy {base_acc:.2f}%.")
    report.append(f"Chaos run: {seconds:.0f} s, exit status {p.returncode}, test accuracy "
                  f"{acc if acc is not None else float('nan'):.2f}%, {len(events)} faults in the first "
                  f"{fault_window:.0f} s:")
    by = collections.Counter((e[1], e[3]) for e in events)
    report.append("- " + ", ".join(f"{n} x {k} of a {r}" for (r, k), n in sorted(by.items())))
    tail = open(log_path).read()
    m = re.search(r"cluster: .*", tail)
    if m:
        report.append(f"- launcher: {m.group(0)}")
    for role, index, pause, dropped in cut_drops:
        report.append(f"- cut of {role} {index} for {pause:.1f} s: {dropped} packets dropped")
        if dropped == 0:
            ok = False
            report.append(f"FAIL: the cut of {role} {index} dropped nothing (the process was not cut off)")
    if hung:
        ok = False
        report.append("FAIL: the run did not finish in time (killed)")
    if p.returncode != 0 or acc is None:
        ok = False
        report.append("FAIL: the chaos run did not complete:\n" + tail[-1500:])
    if seconds < args.minutes * 60:
        ok = False
        report.append(f"FAIL: the run ended after {seconds:.0f} s, before {args.minutes:g} minutes of faults "
                      "(give more --epochs)")
    kinds_done = {(e[1], e[3]) for e in events}
    cover_kinds = {("shard", "kill -9"), ("replica", "kill -9"), ("shard", "SIGSTOP"), ("replica", "SIGSTOP")}
    if cuts:
        cover_kinds |= {("replica", "cut"), ("shard", "cut")}
    if args.cover and not cover_kinds <= kinds_done:
        ok = False
        missing = ", ".join(f"{k} of a {r}" for r, k in sorted(cover_kinds - kinds_done))
        report.append(f"FAIL: --cover, but no {missing} in {fault_window:.0f} s of faults (give more --minutes)")
    if acc is not None and acc < base_acc - args.tolerance:
        ok = False
        report.append(f"FAIL: accuracy {acc:.2f}% is more than {args.tolerance:g} points below {base_acc:.2f}%")
    survivors = subprocess.run(["pgrep", "-f", chaos_dir], capture_output=True, text=True).stdout.split()
    if survivors:
        ok = False
        report.append(f"FAIL: {len(survivors)} processes of the run survived it")
    ledger_ok, shards = check_ledgers(ledger, report)
    ok = ok and ledger_ok
    # How soon replicas pushed to a shard again after its kill: the first apply of its next process.
    waits = []
    for s, times in kills.items():
        starts = sorted(shards[s], key=lambda inc: inc[1])
        for t in times:
            # The first push a replica made to a later process (not one it applied from its log).
            later = [a for inc in starts if inc[1] / 1e9 > t for a in inc[2] if not a[4]]
            if later:
                waits.append(min(a[3] for a in later) / 1e9 - t)
    if waits:
        report.append(f"- a killed shard took its first push again {min(waits):.2f}-{max(waits):.2f} s after the "
                      f"kill (median {sorted(waits)[len(waits) // 2]:.2f} s; the launcher restarts it, the "
                      "replicas' clients find it)")
        if max(waits) > args.max_resume:
            ok = False
            report.append(f"FAIL: replicas took {max(waits):.2f} s to push to a restarted shard (more than "
                          f"--max-resume {args.max_resume:g} s)")
    report.append("")
    report.append("PASS" if ok else "FAIL")
    text = "\n".join(report)
    print(text)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(text + "\n")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
