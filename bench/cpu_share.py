"""How much of the machine other processes took while a benchmark section ran (Linux /proc), shared by bench scripts."""
import os
import time
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
CPUS = len(os.sched_getaffinity(0))
NOISY = 0.05  # others' share of the CPUs above which a timed section is reported as skewed


def process_cpu(pid: str) -> float:
    """CPU seconds of a process and of its reaped children (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15]) / TICKS


class Stopwatch:
    """Wall time of a section, and the shares of all CPUs that other processes took and the hypervisor stole."""

    def __init__(self, markers: tuple[str, ...] = ()):
        self.markers = markers  # command-line text of helper processes that count as ours (Dovecot, PG backends)
        self.seconds = self.others = self.steal = 0.0

    def __enter__(self) -> "Stopwatch":
        self._start = self._sample()
        return self

    def __exit__(self, *exc_info) -> None:
        wall, busy, steal, ours = (end - start for start, end in zip(self._start, self._sample()))
        self.seconds = wall
        self.others = max(0.0, busy - ours) / (wall * CPUS)
        self.steal = steal / (wall * CPUS)

    def _sample(self) -> tuple[float, float, float, float]:
        """Now, the machine's busy and stolen CPU seconds, and those of this process and its helper processes."""
        now = time.perf_counter()
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / TICKS  # all but idle and iowait; guest is inside user
        mine = os.times()
        ours = mine.user + mine.system + mine.children_user + mine.children_system
        if self.markers:
            for entry in Path("/proc").iterdir():
                try:
                    if entry.name.isdigit() and any(
                            marker in (entry / "cmdline").read_text(errors="replace") for marker in self.markers):
                        ours += process_cpu(entry.name)
                except OSError:  # the process ended while we looked; its time is in its parent's cutime now
                    continue
        return now, busy, ticks[7] / TICKS, ours

    def note(self) -> str:
        """How much the rest of the machine competed, for the result line."""
        return (f"others' CPU {self.others:.0%}, steal {self.steal:.0%}"
                + (" (skewed)" if self.others > NOISY else ""))
