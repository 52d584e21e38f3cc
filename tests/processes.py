"""Real `monitor` processes for tests: started together, as a clinic's cron jobs and daemons are."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

#: A real `monitor` process that imports everything, says it is ready, waits for the word, then runs.
TOGETHER = """import pathlib, sys, time
from monitor.cli import main
pathlib.Path(sys.argv[1]).touch()
while not pathlib.Path(sys.argv[2]).exists():
    time.sleep(0.002)
raise SystemExit(main(sys.argv[3:]))
"""


def all_at_once(url: str, folder: Path, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    """Run each command in its own `monitor` process, all released at the same instant."""
    go = folder / "go"
    env = {**os.environ, "MONITOR_DATABASE_URL": url}
    started = [subprocess.Popen([sys.executable, "-c", TOGETHER, str(folder / f"ready{n}"), str(go), *command],
                                cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for n, command in enumerate(commands)]
    deadline = time.monotonic() + 120
    while not all((folder / f"ready{n}").exists() for n in range(len(commands))) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    done = []
    for process in started:
        out, err = process.communicate(timeout=180)
        done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return done
