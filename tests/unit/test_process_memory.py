"""The import's memory setting: glibc's mmap threshold fixed, so a freed big message goes back to the system."""
import platform
import subprocess
import sys

import pytest

# In a fresh process: free one 25 MB buffer (glibc then raises its mmap threshold), fill a second one with a small
# buffer after it, free the second, and print how many kB of it stayed resident.
PROGRAM = """
import sys
from portal.mailsync.memory import keep_big_buffers_out_of_the_heap

def resident_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))

if sys.argv[1] == "fixed":
    assert keep_big_buffers_out_of_the_heap()
first = b"x" * 25_000_000
del first
before = resident_kb()
second = b"y" * 25_000_000
after_it = b"z" * 200_000
del second
print(resident_kb() - before)
"""


def stayed_resident_kb(mode: str) -> int:
    """kB of a freed 25 MB buffer still resident, with or without the fixed threshold."""
    return int(subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, check=True)
               .stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_a_freed_big_message_goes_back_to_the_system():
    """glibc alone keeps the second buffer in its heap after it is freed; with the fixed threshold it goes back."""
    assert stayed_resident_kb("plain") > 20_000
    assert stayed_resident_kb("fixed") < 5_000
