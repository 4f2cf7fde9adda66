"""CNI spec versions: which we speak and how they compare (CNI spec, "Version")."""

from __future__ import annotations

from .errors import CNIError, Code

CURRENT = "1.1.0"
# 0.3.0 is accepted too: Spiderpool and the reference plugins speak it, and its result
# shape is the same as 0.3.1's.
SUPPORTED: tuple[str, ...] = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


def parse(version: str) -> tuple[int, int, int]:
    """Split "major.minor.micro"; an empty version means 0.1.0, as in the reference library.

    Raises CNIError(DECODING_FAILURE) for anything else.
    """
    if version == "":
        return (0, 1, 0)
    parts = version.split(".")
    if len(parts) > 3 or not all(p.isdigit() for p in parts):
        raise CNIError(Code.DECODING_FAILURE, f"invalid CNI version '{version}'")
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return (nums[0], nums[1], nums[2])


def at_least(version: str, other: str) -> bool:
    """True when `version` >= `other`."""
    return parse(version) >= parse(other)


def check_supported(version: str) -> None:
    """Raise INCOMPATIBLE_VERSION unless we speak `version` exactly."""
    if version not in SUPPORTED:
        raise CNIError(
            Code.INCOMPATIBLE_VERSION,
            "incompatible CNI versions",
            f"config is '{version}', plugin supports {', '.join(SUPPORTED)}",
        )


def version_info_json() -> str:
    """What VERSION prints. cni/launcher.py bakes the same text into executables."""
    versions = ",".join(f'"{v}"' for v in SUPPORTED)
    return f'{{"cniVersion":"{CURRENT}","supportedVersions":[{versions}]}}\n'
