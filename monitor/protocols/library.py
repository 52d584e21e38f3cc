"""Every protocol of a config folder, loaded once."""


from __future__ import annotations

from collections.abc import Iterable
from functools import cache, cached_property
from pathlib import Path

from monitor.domain.errors import ProtocolError
from monitor.domain.protocol import (
    MonitoringProtocol,
)
from monitor.paths import config_dir
from monitor.protocols.build import load_protocol
from monitor.protocols.catalog import load_catalog, load_drug_list


class Library:
    """Every protocol in a config folder, with the analyte catalog and the drug list they share."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or config_dir()
        for shared in ("analytes.toml", "drugs.toml"):
            if not (self.directory / shared).is_file():
                raise ProtocolError(f"{self.directory}: no {shared}; a protocols directory needs analytes.toml, "
                                    "drugs.toml, grading/, safety/ and protocols/ like the packaged config/")
        self.catalog = load_catalog(self.directory)
        self.drug_list = load_drug_list(self.directory)
        self.protocols: dict[str, MonitoringProtocol] = {}
        for path in sorted((self.directory / "protocols").glob("*.toml")):
            protocol = load_protocol(path, self.catalog, self.drug_list, self.directory)
            if protocol.id != path.stem:
                raise ProtocolError(f"{path.name}: protocol.id {protocol.id!r} must match the file name")
            self.protocols[protocol.id] = protocol

    def get(self, protocol_id: str) -> MonitoringProtocol:
        try:
            return self.protocols[protocol_id]
        except KeyError:
            known = ", ".join(sorted(self.protocols)) or "none"
            raise ProtocolError(f"unknown protocol {protocol_id!r}; known: {known}") from None

    def ids(self) -> Iterable[str]:
        return self.protocols.keys()

    @cached_property
    def graders(self) -> list[MonitoringProtocol]:
        """One protocol per distinct grading (several protocols usually share CTCAE v5) and fallback
        ranges: the sex-neutral ones and each sex's (all from the catalog), so a result without a lab
        range is screened at ingestion, where the patient's sex is not looked up, against every one."""
        distinct: dict[tuple[str, str, int, str], MonitoringProtocol] = {}
        for p in self.protocols.values():
            for sex in ("", *p.sex_reference_ranges):
                distinct.setdefault((p.grading.name, p.grading.version, p.grading.critical_min_grade, sex),
                                    p.for_sex(sex))
        return list(distinct.values())


@cache
def packaged_library() -> Library:
    """The protocols shipped with monitor (loaded once per process)."""
    return Library()
