"""scapy (about 30 MB and 250 ms) is imported by the node service only when frames are built,
or at its start when its defaults probe every ADD."""

from __future__ import annotations

import subprocess
import sys

LOADED = "print(sorted({m.split('.')[0] for m in sys.modules} & {'scapy', 'bcc', 'kubernetes'}))"


def loaded_after(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"import sys\n{code}\n{LOADED}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_node_service_loads_no_scapy_bcc_or_kubernetes_when_imported() -> None:
    assert loaded_after("import spidernet.node.agent.serve") == "[]"


def test_a_frame_or_a_probing_detector_loads_scapy() -> None:
    frame = "from spidernet.node.detect.announce import gratuitous_arp\n"
    frame += "from ipaddress import IPv4Address\n"
    frame += "gratuitous_arp('02:00:00:00:00:01', IPv4Address('192.0.2.1'))"
    assert loaded_after(frame) == "['scapy']"
    detector = "from spidernet.node.agent.detection import Detector, Settings\n"
    assert loaded_after(detector + "Detector(None, Settings())") == "[]"
    assert loaded_after(detector + "Detector(None, Settings(conflict=True))") == "['scapy']"
