#!/usr/bin/python3
"""The dashboard in Debian's headless Chromium (through chromedriver), as a person looks at it.

Run by dashboard_test.cpp (DashboardTest.InAHeadlessBrowser) against the real thecald on the
sim backend (already infusing) over the private bus.  Every wait is on the page's content
with a deadline, never a sleep.  Screenshots and the report's PDF go to --artifacts.
Chromium runs with --no-sandbox only when this runs as root (CI does): its sandbox refuses
root.
"""
import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.print_page_options import PrintOptions
from selenium.webdriver.support.ui import WebDriverWait

args = argparse.ArgumentParser()
for a in ("url", "bus", "thecalctl", "thecald", "config", "thecald-pid", "artifacts", "work"):
    args.add_argument("--" + a, required=True)
args = args.parse_args()
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def ctl(*a):
    r = subprocess.run([args.thecalctl, "--address", args.bus, *a], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError("thecalctl %s: %s %s" % (" ".join(a), r.stdout, r.stderr))
    return r.stdout


def shot(name):
    driver.save_screenshot(os.path.join(args.artifacts, name + ".png"))


def wait(pred, what, timeout=10):
    try:
        WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: pred())
        return True
    except Exception:  # noqa: BLE001 - a time-out is reported as a failed check
        check(False, what + " (waited %d s)" % timeout)
        return False


opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for o in ("--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1800"):
    opts.add_argument(o)
if os.geteuid() == 0:
    opts.add_argument("--no-sandbox")
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
restarted = None
try:
    body = lambda: driver.find_element(By.TAG_NAME, "body")  # noqa: E731

    # 1. The live page shows the state.
    driver.get(args.url)
    if wait(lambda: body().get_attribute("data-state") == "infusing" and body().get_attribute("data-reachable") == "yes",
            "the page shows the pump infusing"):
        check(driver.find_element(By.ID, "state").text == "infusing", "state text")
        check("morphine" in driver.find_element(By.ID, "drugs").text.lower() or
              driver.find_element(By.CSS_SELECTOR, "#drugs .drug") is not None, "the drug against its limit")
    wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#events tr[data-type=started]")) > 0,
         "the start is in the event log")
    wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#latency rect")) > 0, "the latency histogram is drawn")
    shot("live")

    # 2. A clinician bolus appears in the history (the event log and the bolus line).
    ctl("clinician-bolus", "20 mcg", "--over", "10 min")
    wait(lambda: any("clinician" in r.text for r in driver.find_elements(By.CSS_SELECTOR, "#events tr[data-type=bolus_started]")),
         "the clinician bolus is in the page's history")
    wait(lambda: driver.find_element(By.ID, "bolus").text == "bolus running", "the bolus shows as running")

    # 3. An injected occlusion shows as a high alarm within a second of the injection, as
    #    the page itself stamps it (data-shown-ms, Date.now() when first drawn).
    t0 = driver.execute_script("return Date.now();")
    ctl("fault", "occlusion", "on")
    sel = "#alarms li[data-code=occlusion][data-priority=high]"
    if wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, sel)) > 0, "the occlusion appears as a high alarm"):
        shown = int(driver.find_element(By.CSS_SELECTOR, sel).get_attribute("data-shown-ms"))
        check(shown - t0 <= 1000, "occlusion shown %d ms after the injection (<= 1000 ms)" % (shown - t0))
        check("alarm-high" in body().get_attribute("class"), "the page turns red")
        check("HIGH ALARM" in driver.find_element(By.ID, "banner").text, "the banner names the high alarm")
    shot("live-occlusion")

    # 4. The report prints to PDF; its text holds the period's figures.
    with urllib.request.urlopen(args.url + "api/status", timeout=5) as r:
        status = json.load(r)
    driver.get(args.url + "report")
    wait(lambda: "Period totals" in body().text, "the report is shown")
    shot("report")
    po = PrintOptions()
    po.page_width = 21.0
    po.page_height = 29.7
    pdf = os.path.join(args.artifacts, "report.pdf")
    with open(pdf, "wb") as f:
        f.write(base64.b64decode(driver.print_page(po)))
    text = subprocess.run(["pdftotext", "-layout", pdf, "-"], capture_output=True, text=True).stdout
    with open(os.path.join(args.artifacts, "report.txt"), "w") as f:
        f.write(text)
    drug = status["pump"]["Drug"]
    today = time.strftime("%Y-%m-%d", time.gmtime(status["diagnostics"]["WallClockUsec"] / 1e6))
    check(drug in text, "the PDF names the drug " + drug)
    check(today in text, "the PDF has today's row " + today)
    # The figures against the pump's own log, read by thecalctl (GetEvents).
    events = json.loads(ctl("--json", "events", "100000"))
    since = status["diagnostics"]["WallClockUsec"] - 7 * 86400 * 10**6
    count = lambda t: sum(1 for e in events if e["type"] == t and e["time_usec"] >= since)  # noqa: E731
    check(count("alarm_raised") >= 2 and "Alarms raised: %d." % count("alarm_raised") in text,
          "the PDF counts the alarms (restart, occlusion): %d" % count("alarm_raised"))
    check("Refills: %d." % count("refill") in text and count("refill") == 1, "the PDF counts the refill")
    check("requested %d," % count("bolus_started") in text and count("bolus_started") == 1,
          "the PDF counts the clinician bolus")
    hist = json.loads(ctl("--json", "history", "8d", "1d"))
    ul = sum(b["ul"] for b in hist)
    check(ul >= 220 and "Volume pumped %.1f uL" % ul in text, "the PDF's volume is the pump's (%.1f uL)" % ul)
    check("occlusion" in text, "the PDF lists the occlusion")
    check("first fill" in text, "the PDF lists the refill")

    # 5. The preview page: upload a prescription; the old and new previews side by side, or
    #    (thecald without PreviewPrescription) thecald's error said plainly.
    driver.get(args.url + "preview")
    example = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "examples", "prescription-flex.yaml"))
    driver.find_element(By.ID, "file").send_keys(example)
    driver.find_element(By.ID, "submit").click()
    wait(lambda: driver.find_elements(By.ID, "error") or driver.find_elements(By.ID, "new-mass"),
         "the preview answers")
    errors = driver.find_elements(By.ID, "error")
    if errors:
        check("UnknownMethod" in errors[0].text or "org.thecal.Pump1.Error" in errors[0].text,
              "the preview error is thecald's, said plainly: " + errors[0].text)
    else:
        check(len(driver.find_elements(By.CSS_SELECTOR, "#old-mass polyline")) == 1, "the active prescription's plot")
        check(len(driver.find_elements(By.CSS_SELECTOR, "#new-mass polyline")) == 1, "the uploaded prescription's plot")
    shot("preview")

    # 6. thecald goes away: the page says so; it comes back: the page is live again.
    driver.get(args.url)
    wait(lambda: body().get_attribute("data-reachable") == "yes", "live again before the restart")
    os.kill(int(args.thecald_pid), signal.SIGTERM)
    if wait(lambda: body().get_attribute("data-reachable") == "no", "the page notices thecald is gone"):
        check("pump not reachable" in driver.find_element(By.ID, "banner").text, "the page says the pump is not reachable")
    shot("live-pump-gone")
    restarted = subprocess.Popen([args.thecald, "--config", args.config, "--bus", args.bus],
                                 stdout=open(os.path.join(args.work, "thecald-restarted.log"), "w"), stderr=subprocess.STDOUT)
    wait(lambda: body().get_attribute("data-reachable") == "yes" and driver.find_element(By.ID, "state").text != "",
         "the page is live again after thecald restarted", timeout=15)
    check(driver.find_element(By.ID, "banner").get_attribute("class").find("hidden") >= 0 or
          "HIGH ALARM" in driver.find_element(By.ID, "banner").text, "the not-reachable banner is gone")
    shot("live-after-restart")
finally:
    driver.quit()
    if restarted is not None:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=10)

print("screenshots and report.pdf in " + args.artifacts)
sys.exit(1 if failures else 0)
