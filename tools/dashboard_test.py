#!/usr/bin/python3
"""The dashboard in a real browser (Debian's chromium, chromium-driver and python3-selenium).

Trains a short MNIST run with `train --dashboard PORT` beside an earlier finished run, opens the
page in headless Chromium and checks: the live run is listed as running; its curve grows as records
arrive; the last step and value the page shows are a record of metrics.jsonl; the two runs overlay;
log axes and smoothing redraw; the browser console holds no error. Then the server's edges: a POST
gets 405, an unknown run 404, a path out of the run 400, a garbage request line 400 (and the server
still answers), a non-loopback address without a token is refused at start, and with a token every
request without it gets 401. TensorBoard event files are written beside metrics.jsonl.

Usage: dashboard_test.py --bin build/tools/distbelief --work DIR [--screenshot docs/dashboard.png]
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def fail(msg):
    print("dashboard_test: FAIL: " + msg, flush=True)
    sys.exit(1)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(url, method="GET", headers=None):
    req = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_for(what, check, timeout):
    end = time.time() + timeout
    while time.time() < end:
        v = check()
        if v:
            return v
        time.sleep(0.2)
    fail("timed out waiting for " + what)


def train(bin_path, run_dir, epochs, extra=()):
    """Downpour on MNIST, 2 replicas and 2 shards in one process: a metrics record and a
    cluster.jsonl record every second."""
    return [bin_path, "train", "--config", "configs/mnist_downpour.toml", "--overwrite",
            "--set", 'train.run_dir="%s"' % run_dir, "--set", "train.epochs=%d" % epochs,
            "--set", "distributed.replicas=2", "--set", "model.hidden=[256]",
            "--set", "train.tensorboard=true"] + list(extra)


def raw_request(port, data):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return s.recv(200).decode("latin-1")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--screenshot", default="")
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    runs = os.path.join(a.work, "runs")
    earlier, live = os.path.join(runs, "earlier"), os.path.join(runs, "live")
    subprocess.run(train(a.bin, earlier, 1), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    port = free_port()
    base = "http://127.0.0.1:%d/" % port
    log = open(os.path.join(a.work, "train.log"), "w")
    # Long enough that the page is checked before it ends: 80 epochs took about 50 s on a Zen 4 but
    # ended before the last check on a Zen 5 (the page's next poll then failed in the console).
    proc = subprocess.Popen(train(a.bin, live, 200, ["--dashboard", str(port)]), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for("the dashboard", lambda: _up(base), 30)
        opts = Options()
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1500"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
        try:
            check_page(driver, base, live, a.screenshot, proc)
        finally:
            driver.quit()
        check_edges(port)
        if proc.wait(timeout=300) != 0:
            fail("the live run exited with %d (log: %s)" % (proc.returncode, log.name))
    finally:
        if proc.poll() is None:
            proc.kill()
    if not any(f.startswith("events.out.tfevents.") for f in os.listdir(live)):
        fail("no TensorBoard event file in " + live)
    check_token(a.bin, runs)
    print("dashboard_test: OK", flush=True)


def _up(base):
    try:
        return http(base + "api/runs")[0] == 200
    except OSError:
        return False


def text(driver, id_):
    return driver.find_element(By.ID, id_).text.strip()


def check_page(driver, base, live, screenshot, proc):
    driver.get(base)
    wait_for("the live run to be listed as running",
             lambda: "running" in driver.find_element(By.ID, "runs").text, 30)
    wait_for("the page to follow the live run", lambda: text(driver, "live-run") == "live", 25)
    wait_for("the first points", lambda: text(driver, "points").isdigit() and int(text(driver, "points")) > 0, 30)
    n1 = int(text(driver, "points"))
    time.sleep(5)  # a record a second, a redraw every 2 s
    n2 = int(text(driver, "points"))
    if proc.poll() is not None:
        fail("the live run ended before the curve could be watched growing")
    if n2 <= n1:
        fail("the curve did not grow: %d points, then %d five seconds later" % (n1, n2))
    print("dashboard_test: the curve grew from %d to %d points in 5 s" % (n1, n2), flush=True)
    # The numbers shown are a record of metrics.jsonl.
    # Read together in one script, so a redraw cannot fall between them.
    x_name, metric, last_x, last_v = driver.execute_script(
        "return ['x-name', 'metric-name', 'last-x', 'last-value'].map(i => document.getElementById(i).textContent);")
    last_x, last_v = float(last_x), float(last_v)
    records = [json.loads(l) for l in open(os.path.join(live, "metrics.jsonl")) if l.strip()]
    match = [r for r in records if r.get(x_name) == last_x and metric in r]
    if not match or abs(match[-1][metric] - last_v) > 1e-9 * max(1.0, abs(last_v)):
        fail("the page shows %s=%g, %s=%r, which metrics.jsonl does not hold" % (x_name, last_x, metric, last_v))
    print("dashboard_test: the page shows %s %g, %s %r, as metrics.jsonl does" % (x_name, last_x, metric, last_v), flush=True)
    check_cluster(driver, live)
    # Overlay the earlier run: two series in the chart's legend besides x.
    # (A click through script: the table is redrawn every 10 s, so a found element may go stale.)
    driver.execute_script("document.querySelector('input[data-run=\"earlier\"]').click();")
    wait_for("two runs overlaid", lambda: len(driver.find_elements(By.CSS_SELECTOR, ".u-legend .u-series")) == 3, 10)
    driver.find_element(By.ID, "logy").click()
    driver.execute_script("const s = document.getElementById('smooth'); s.value = 0.6; s.dispatchEvent(new Event('input'));")
    time.sleep(1)
    if len(driver.find_elements(By.CSS_SELECTOR, "#chart canvas")) != 1:
        fail("no chart after switching to a log axis and smoothing")
    if screenshot:
        driver.find_element(By.ID, "logy").click()
        time.sleep(1)
        driver.save_screenshot(screenshot)
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    if errors:
        fail("the browser console shows errors: %s" % errors)


def check_cluster(driver, live):
    """Replicas and shards: one row each, steps growing, the staleness bars those of cluster.jsonl."""
    wait_for("the replicas and shards section", lambda: driver.find_element(By.ID, "cluster").is_displayed(), 15)
    def rows(id_):
        return driver.execute_script(
            "return [...document.querySelectorAll('#%s tbody tr')].map(tr => [...tr.cells].map(c => c.textContent));" % id_)
    r1 = rows("replicas")
    if len(r1) != 2 or len(rows("shards")) != 2:
        fail("expected 2 replicas and 2 shards, the page shows %s and %s" % (r1, rows("shards")))
    time.sleep(11)  # the page asks every 5 s
    r2 = rows("replicas")
    if not all(b[1] == "up" and int(b[2]) > int(a[2]) for a, b in zip(r1, r2)):
        fail("replica steps did not grow while up: %s then %s" % (r1, r2))
    shards = rows("shards")
    if not all(s[2] == "up" and int(s[3]) > 0 for s in shards):
        fail("shards not up or without updates: %s" % shards)
    shown = driver.execute_script(
        "return [...document.querySelectorAll('#staleness span[data-bucket]')].map(s => +s.textContent);")
    records = [json.loads(l) for l in open(os.path.join(live, "cluster.jsonl")) if l.strip()]
    if shown not in [r["staleness"] for r in records]:
        fail("the staleness bars %s are no record of cluster.jsonl" % shown)
    print("dashboard_test: replicas %s, shards %s, staleness %s" % (r2, shards, shown), flush=True)


def check_edges(port):
    base = "http://127.0.0.1:%d/" % port
    for method, path, want in (("POST", "api/runs", 405), ("DELETE", "api/runs", 405),
                               ("GET", "api/metrics?run=../../etc", 404), ("GET", "api/cluster?run=nothing", 404),
                               ("GET", "api/metrics?run=live&from=-1", 400),
                               ("GET", "api/file?run=live&name=../../../etc/passwd.png", 400),
                               ("GET", "api/file?run=live&name=metrics.jsonl", 400),
                               ("GET", "static/../../etc/passwd", 404), ("GET", "nothing/here", 404)):
        got = http(base + path, method)[0]
        if got != want:
            fail("%s /%s gave %d, not %d" % (method, path, got, want))
    reply = raw_request(port, b"GARBAGE\r\n\r\n")
    if " 400 " not in reply.split("\r\n")[0]:
        fail("a garbage request line got %r" % reply[:60])
    if http(base + "api/runs")[0] != 200:
        fail("the server stopped answering after bad requests")


def check_token(bin_path, runs):
    r = subprocess.run([bin_path, "dashboard", "--runs", runs, "--listen", "0.0.0.0:0"],
                       capture_output=True, text=True, timeout=30)
    if r.returncode == 0 or "token" not in r.stderr:
        fail("a non-loopback dashboard without a token started (exit %d, %r)" % (r.returncode, r.stderr))
    port = free_port()
    p = subprocess.Popen([bin_path, "dashboard", "--runs", runs, "--listen", "0.0.0.0:%d" % port, "--token", "s3cret"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = "http://127.0.0.1:%d/" % port
        wait_for("the token dashboard", lambda: _answers(base), 20)
        if http(base + "api/runs")[0] != 401 or http(base + "api/runs?token=wrong")[0] != 401:
            fail("a request without the right token was served")
        if http(base + "api/runs?token=s3cret")[0] != 200:
            fail("a request with ?token= was refused")
        if http(base + "api/runs", headers={"Authorization": "Bearer s3cret"})[0] != 200:
            fail("a request with an Authorization header was refused")
        p.send_signal(signal.SIGTERM)
        if p.wait(timeout=20) != 0:
            fail("the dashboard did not exit cleanly on SIGTERM")
    finally:
        if p.poll() is None:
            p.kill()


def _answers(base):
    try:
        http(base + "api/runs")
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
