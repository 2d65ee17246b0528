"""The repository names no folder of one machine (a home or work folder): it must work wherever it is cloned."""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Home and workspace folders; system paths such as /usr/bin/chromium or /proc/stat are the same everywhere.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|home|Users|root)/")


def test_no_file_names_a_machine_folder():
    """Code, docs and bench instructions find things relative to the repository (e.g. ../shared/corpus)."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    found = []
    for name in filter(None, tracked.decode().split("\0")):
        path = REPO / name
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binary files
        found += [f"{name}:{number}" for number, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not found, f"absolute paths of one machine: {found}"
