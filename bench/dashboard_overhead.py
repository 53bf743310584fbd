#!/usr/bin/python3
"""What watching costs: training throughput with and without the dashboard, side by side.

Runs the same Downpour MNIST job (one replica per thread, 2 shards, one process) in alternating pairs: alone,
then with `--dashboard` and a watcher. Two kinds of watcher:
  client:  a script that does what the page does (the event stream of metrics, /api/runs every
           2 s, /api/cluster every second): the server's own cost;
  browser: the page itself in headless Chromium on the same machine (its rendering shares the
           cores with training; a user looking from another machine does not pay this part);
  blank:   headless Chromium on about:blank beside the run (no dashboard): the floor a browser
           on the same machine costs whatever page it shows.
Chromium is launched before the watched run starts (a user's browser is already open; launching
one is not watching) and opens the page as soon as the run's dashboard answers. Throughput is the
run's examples / seconds from its last metrics record, and also the steady state: from the first
record after the watcher settled (the page loaded, 5 s more) to the end, against the same window
of seconds of the run alone. Prints
each pair and the median ratios per kind. On 2 shared vCPUs run-to-run noise is several percent, more than the effect,
so it also prints the direct measure: the CPU time of the server's threads (named "dashboard",
read from /proc while the run lasts) as a share of the training process's CPU time, and for the
browser kinds the CPU of all Chromium's processes, in cores, from 5 s after the page loaded.

Usage: bench/dashboard_overhead.py [--bin build/tools/distbelief] [--pairs 3] [--epochs 20] [--threads 2]
                                   [--kinds client,browser,blank]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(bin_path, run_dir, epochs, threads, port=None):
    # One replica thread per training thread: --threads 1 is one replica on one core.
    cmd = [bin_path, "train", "--config", "configs/mnist_downpour.toml", "--overwrite",
           "--set", 'train.run_dir="%s"' % run_dir, "--set", "train.epochs=%d" % epochs,
           "--set", "distributed.replicas=%d" % threads, "--set", "train.threads=%d" % threads]
    if port is not None:
        cmd += ["--dashboard", str(port)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid):
    """(CPU seconds of the process, of its threads named "dashboard"), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    def stat_cpu(path):
        fields = open(path).read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    total = stat_cpu("/proc/%d/stat" % pid)
    dash = 0.0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            if open("/proc/%d/task/%s/comm" % (pid, tid)).read().strip() == "dashboard":
                # schedstat's first field: nanoseconds on a CPU (stat's ticks are 10 ms, too coarse here)
                dash += int(open("/proc/%d/task/%s/schedstat" % (pid, tid)).read().split()[0]) / 1e9
        except OSError:
            pass
    return total, dash


def sample_cpu(proc, out):
    """Keeps the latest (total, dashboard) CPU seconds of proc in out[0] until it exits."""
    while proc.poll() is None:
        try:
            out[0] = cpu_seconds(proc.pid)
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.25)


def records(run_dir):
    try:
        return [json.loads(l) for l in open(os.path.join(run_dir, "metrics.jsonl")) if l.strip()]
    except OSError:
        return []


def throughput(run_dir, after=0.0):
    """Examples/s of the whole run, or of its records from `after` seconds into it to its end."""
    rs = records(run_dir)
    last = rs[-1]
    first = next((r for r in rs if r["seconds"] >= after), None) if after > 0 else None
    if first is None or last["seconds"] - first["seconds"] < 1.0:
        return last["examples"] / last["seconds"]
    return (last["examples"] - first["examples"]) / (last["seconds"] - first["seconds"])


def wait_up(base, proc):
    while proc.poll() is None:
        try:
            urllib.request.urlopen(base + "api/runs", timeout=2).read()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def client_watch(base, run, stop, ready):
    def stream():
        try:
            with urllib.request.urlopen(base + "api/stream?run=" + run, timeout=5) as r:
                while not stop.is_set() and r.readline():
                    pass
        except OSError:
            pass
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    ready.set()
    tick = 0
    while not stop.is_set():
        try:
            urllib.request.urlopen(base + "api/cluster?run=" + run, timeout=2).read()
            if tick % 2 == 0:
                urllib.request.urlopen(base + "api/runs", timeout=2).read()
        except OSError:
            pass
        tick += 1
        stop.wait(1.0)


def browser_cpu_seconds():
    """CPU seconds so far of every Chromium process (browser, renderers, GPU, network), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")[0]
            if b"chromium" not in exe or b"chromedriver" in exe:
                continue
            fields = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def start_browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(a)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def browser_watch(d, url, stop, ready, cpu=None):
    """Opens url in the browser d (already running) and keeps it open until stop; quits d."""
    try:
        d.get(url)
        # Chromium's own CPU from 5 s after loading to the end of the run, in cores (cpu[0]),
        # read every 3 s (walking /proc is the benchmark's own cost, paid by browser and blank alike).
        time.sleep(5)
        ready.set()
        c0, t0 = browser_cpu_seconds(), time.time()
        while not stop.wait(3.0):
            if cpu is not None and time.time() > t0:
                cpu[0] = (browser_cpu_seconds() - c0) / (time.time() - t0)
    finally:
        ready.set()
        d.quit()


def pair(a, work, kind, i):
    alone = os.path.join(work, "alone")
    p = run(a.bin, alone, a.epochs, a.threads)
    p.wait()
    base_rate = throughput(alone)
    watched = os.path.join(work, "watched")
    port = free_port()
    base = "http://127.0.0.1:%d/" % port
    # A user's browser is open before the run: Chromium is launched (and left 3 s to settle) before
    # the watched run starts, and opens the page as soon as the dashboard answers.
    driver = start_browser() if kind in ("browser", "blank") else None
    if driver is not None:
        time.sleep(3)
    p = run(a.bin, watched, a.epochs, a.threads, port)
    stop = threading.Event()
    ready = threading.Event()
    browser_cores = [None]
    if not wait_up(base, p):
        if driver is not None:
            driver.quit()
        raise SystemExit("the watched run ended before its dashboard answered")
    target = {"client": lambda: client_watch(base, "watched", stop, ready),
              "browser": lambda: browser_watch(driver, base, stop, ready, cpu=browser_cores),
              "blank": lambda: browser_watch(driver, "about:blank", stop, ready, cpu=browser_cores)}[kind]
    t = threading.Thread(target=target, daemon=True)
    t.start()
    # The steady state: from the first metrics record after the watcher is settled (the page
    # loaded and 5 s passed).
    ready.wait()
    settled = max([r["seconds"] for r in records(watched)] or [0.0]) + 1.0
    cpu = [(0.0, 0.0)]
    sampler = threading.Thread(target=sample_cpu, args=(p, cpu), daemon=True)
    sampler.start()
    p.wait()
    sampler.join()
    stop.set()
    t.join(timeout=30)
    rate = throughput(watched)
    steady = throughput(watched, settled) / throughput(alone, settled)
    share = cpu[0][1] / cpu[0][0] if cpu[0][0] > 0 else 0.0
    print("  %-7s pair %d: alone %8.0f examples/s, watched %8.0f examples/s, ratio %.3f; from %.0f s on %.3f; "
          "dashboard threads %.3f s of the process's %.1f s CPU (%.2f%%)" %
          (kind, i + 1, base_rate, rate, rate / base_rate, settled, steady, cpu[0][1], cpu[0][0], 100 * share) +
          ("; Chromium's processes %.3f cores" % browser_cores[0] if browser_cores[0] is not None else ""), flush=True)
    return rate / base_rate, share, browser_cores[0], steady


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="build/tools/distbelief")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kinds", default="client,browser")
    a = ap.parse_args()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print("dashboard overhead: Downpour MNIST, %d replica(s), %d epochs, %d thread(s); %s, %d cores" %
          (a.threads, a.epochs, a.threads, cpu, os.cpu_count()), flush=True)
    with tempfile.TemporaryDirectory() as work:
        for kind in a.kinds.split(","):
            results = [pair(a, work, kind, i) for i in range(a.pairs)]
            ratios = [r[0] for r in results]
            shares = [r[1] for r in results]
            browser = [r[2] for r in results if r[2] is not None]
            steady = [r[3] for r in results]
            print("%s: median throughput with the dashboard open / without = %.3f (%+.1f%%, pairs from %.3f to %.3f); "
                  "steady state (from the watcher settled on) %.3f (%+.1f%%, pairs from %.3f to %.3f); "
                  "the server's threads used %.3f%% of the process's CPU (median)" %
                  (kind, statistics.median(ratios), 100 * (statistics.median(ratios) - 1), min(ratios), max(ratios),
                   statistics.median(steady), 100 * (statistics.median(steady) - 1), min(steady), max(steady),
                   100 * statistics.median(shares)) +
                  ("; Chromium used %.3f cores (median)" % statistics.median(browser) if browser else ""), flush=True)


if __name__ == "__main__":
    main()
