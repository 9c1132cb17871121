import os
import subprocess
from pathlib import Path

YIELD_CPU = Path(__file__).resolve().parents[3] / "deploy" / "local" / "yield-cpu.sh"


def test_yield_cpu_lowers_the_weight_of_its_command_and_of_its_session() -> None:
    probe = "nice; cat /proc/self/autogroup 2>/dev/null || echo none"
    finished = subprocess.run(
        [str(YIELD_CPU), "sh", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,  # as honcho starts it; and keeps this session's weight as is
    )
    niceness, autogroup = finished.stdout.splitlines()

    assert int(niceness) == min(os.nice(0) + 19, 19)  # the lowest priority
    if autogroup != "none":  # a kernel without autogroup has no such file
        assert autogroup.endswith("nice 10")
