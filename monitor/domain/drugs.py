"""The drug list: every name a clinic may type for a drug (generic name, synonyms, brands), folded to
one canonical generic name, and the closest names to a typo. The names come from config/drugs.toml."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

#: At most this many suggestions for an unknown name, each at least this similar (difflib's ratio).
SUGGESTIONS = 3
SIMILARITY = 0.8


def fold(name: str) -> str:
    """The key a name is compared by: case and runs of white space do not matter."""
    return " ".join(name.casefold().split())


@dataclass(frozen=True)
class DrugEntry:
    """One drug (or a class of drugs, with its members) and every name it goes by."""

    name: str  # the canonical generic name: lower case, single spaces
    synonyms: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()
    members: tuple[str, ...] = ()  # a class (e.g. "ace inhibitor"): the generic names of its drugs
    sources: tuple[str, ...] = ()

    def spellings(self) -> Iterable[tuple[str, str]]:
        """(field, name) for the generic name, each synonym and each brand."""
        yield "name", self.name
        yield from (("synonyms", s) for s in self.synonyms)
        yield from (("brands", b) for b in self.brands)


class SpellingClash(ValueError):
    """One name belongs to two drugs: the drug list cannot say which one a clinic meant."""

    def __init__(self, entry: DrugEntry, field_name: str, spelling: str, other: str) -> None:
        super().__init__(f"{spelling!r} is already a name of {other!r}")
        self.entry, self.field_name, self.spelling, self.other = entry, field_name, spelling, other


@dataclass(frozen=True)
class DrugVocabulary:
    entries: dict[str, DrugEntry] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)  # folded spelling -> canonical generic name

    @classmethod
    def of(cls, entries: Iterable[DrugEntry]) -> DrugVocabulary:
        """Raises SpellingClash when a name (folded) belongs to two entries."""
        by_name: dict[str, DrugEntry] = {}
        names: dict[str, str] = {}
        for entry in entries:
            by_name[entry.name] = entry
            for field_name, spelling in entry.spellings():
                owner = names.setdefault(fold(spelling), entry.name)
                if owner != entry.name:
                    raise SpellingClash(entry, field_name, spelling, owner)
        return cls(by_name, names)

    def canonical(self, typed: str) -> str | None:
        """The generic name of a typed drug name (any case or spacing), or None when it is not listed."""
        return self.names.get(fold(typed))

    def generic(self, recorded: str) -> str:
        """The generic name of a stored drug name (a brand or synonym stored before names were checked
        resolves too); a name the list does not know (recorded with --unlisted) stays as it is."""
        return self.canonical(recorded) or recorded

    def members(self, name: str) -> tuple[str, ...]:
        """A class's drugs; empty for a drug."""
        entry = self.entries.get(name)
        return entry.members if entry is not None else ()

    def closest(self, typed: str) -> list[str]:
        """The listed names nearest a typed one, best first, one per drug: `allopurinol`, or
        `Zyloprim (allopurinol)` when the nearest name is a brand or synonym."""
        shown: dict[str, str] = {}
        spelled = {fold(s): s for e in self.entries.values() for _, s in e.spellings()}
        for near in difflib.get_close_matches(fold(typed), self.names, n=len(self.names), cutoff=SIMILARITY):
            generic = self.names[near]
            if generic not in shown:
                shown[generic] = generic if near == generic else f"{spelled[near]} ({generic})"
        return list(shown.values())[:SUGGESTIONS]

    def did_you_mean(self, typed: str) -> str:
        """`did you mean allopurinol or Zyloric (allopurinol)?` for an unknown name; empty when nothing is close."""
        near = self.closest(typed)
        if not near:
            return ""
        return "did you mean " + (near[0] if len(near) == 1 else ", ".join(near[:-1]) + f" or {near[-1]}") + "?"

    def matching(self, name: str) -> frozenset[str]:
        """Every generic name a rule that names `name` applies to: the drug itself, a class's members,
        and the classes the drug belongs to (a patient recorded on "ace inhibitor" may take ramipril)."""
        classes = (e.name for e in self.entries.values() if name in e.members)
        return frozenset((name, *self.members(name), *classes))
