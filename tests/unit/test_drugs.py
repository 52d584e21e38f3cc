"""The drug list (monitor/domain/drugs.py, config/drugs.toml): a typed name resolves to its generic name
whatever its case, spacing, brand or synonym; a typo gets the closest names; every drug a packaged protocol
or CLINICAL.md §7 names is listed (safety issue item 6, hazard H17)."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.domain.drugs import DrugEntry, DrugVocabulary, SpellingClash, fold
from monitor.protocols import packaged_library

CONFIG = Path(__file__).resolve().parents[2] / "config"
DRUGS = packaged_library().drug_list


@pytest.mark.parametrize(
    ("typed", "generic"),
    [
        pytest.param("Zyloprim", "allopurinol", id="allopurinol US brand"),
        pytest.param("Zyloric", "allopurinol", id="allopurinol UK brand"),
        pytest.param("Uricto", "allopurinol", id="allopurinol oral suspension"),
        pytest.param("Imuran", "azathioprine", id="azathioprine brand"),
        pytest.param("Azasan", "azathioprine", id="azathioprine US brand"),
        pytest.param("Imurek", "azathioprine", id="azathioprine German brand"),
        pytest.param("Adenuric", "febuxostat", id="febuxostat UK/EU brand"),
        pytest.param("Uloric", "febuxostat", id="febuxostat US brand"),
        pytest.param("mesalamine", "mesalazine", id="mesalazine US name"),
        pytest.param("Asacol", "mesalazine", id="mesalazine brand Asacol"),
        pytest.param("Pentasa", "mesalazine", id="mesalazine brand Pentasa"),
        pytest.param("Octasa", "mesalazine", id="mesalazine brand Octasa"),
        pytest.param("Salofalk", "mesalazine", id="mesalazine brand Salofalk"),
        pytest.param("Lialda", "mesalazine", id="mesalazine brand Lialda"),
        pytest.param("Septrin", "co-trimoxazole", id="co-trimoxazole UK brand"),
        pytest.param("Bactrim", "co-trimoxazole", id="co-trimoxazole US brand"),
        pytest.param("trimethoprim-sulfamethoxazole", "co-trimoxazole", id="co-trimoxazole US name"),
        pytest.param("sulfamethoxazole-trimethoprim", "co-trimoxazole", id="co-trimoxazole reversed"),
        pytest.param("trimethoprim", "trimethoprim", id="trimethoprim alone is its own drug"),
        pytest.param("Tritace", "ramipril", id="ramipril UK brand"),
        pytest.param("indomethacin", "indometacin", id="indometacin US spelling"),
        pytest.param("prednisone", "prednisone", id="prednisone is not prednisolone"),
        pytest.param("ACE inhibitor", "ace inhibitor", id="a class by name"),
    ],
)
def test_a_brand_or_synonym_resolves_to_its_generic_name(typed: str, generic: str) -> None:
    assert DRUGS.canonical(typed) == generic


@pytest.mark.parametrize("typed", ["  ZYLOPRIM ", "Co-Trimoxazole", "mycophenolate   mofetil", "BACTRIM\tDS",
                                   "Allopurinol\n"])
def test_case_and_runs_of_spaces_do_not_matter(typed: str) -> None:
    assert DRUGS.canonical(typed) is not None
    assert DRUGS.canonical(typed) == DRUGS.canonical(fold(typed))


@pytest.mark.parametrize(
    ("typed", "closest"),
    [
        pytest.param("allopurinl", ["allopurinol"], id="one letter missing"),
        pytest.param("azathiprine", ["azathioprine"], id="the anchor drug mistyped"),
        pytest.param("zyloprm", ["Zyloprim (allopurinol)"], id="a mistyped brand names its generic drug"),
        pytest.param("mesalamin", ["mesalamine (mesalazine)"], id="a mistyped US name"),
        pytest.param("prednisilone", ["prednisolone", "prednisone"], id="two drugs close by, best first"),
        pytest.param("xyzzy", [], id="nothing close"),
    ],
)
def test_a_typo_gets_the_closest_listed_names(typed: str, closest: list[str]) -> None:
    assert DRUGS.canonical(typed) is None
    assert DRUGS.closest(typed) == closest


def test_did_you_mean_lists_the_closest_names_as_one_phrase() -> None:
    assert DRUGS.did_you_mean("allopurinl") == "did you mean allopurinol?"
    assert DRUGS.did_you_mean("prednisilone") == "did you mean prednisolone or prednisone?"
    assert DRUGS.did_you_mean("xyzzy") == ""


def test_a_class_rule_covers_its_members_and_a_recorded_class_meets_a_member_rule() -> None:
    # CLINICAL.md §7 names "ACE inhibitors": a rule naming the class covers captopril, which no protocol lists
    assert {"ramipril", "captopril", "ace inhibitor"} <= DRUGS.matching("ace inhibitor")
    # a patient recorded on "ace inhibitor" (agent unknown) may take ramipril: a ramipril rule applies
    assert "ace inhibitor" in DRUGS.matching("ramipril")
    assert DRUGS.matching("ribavirin") == {"ribavirin"}


def test_one_name_for_two_drugs_is_a_spelling_clash() -> None:
    with pytest.raises(SpellingClash) as caught:
        DrugVocabulary.of([DrugEntry("allopurinol", brands=("Zyloprim",)),
                           DrugEntry("febuxostat", brands=("ZYLOPRIM",))])
    assert (caught.value.entry.name, caught.value.field_name, caught.value.spelling, caught.value.other) == (
        "febuxostat", "brands", "ZYLOPRIM", "allopurinol")


def protocol_drug_names() -> Iterator[tuple[str, str]]:
    """(where, name) for every drug each packaged protocol file names, as written in the file."""
    for path in sorted((CONFIG / "protocols").glob("*.toml")):
        p = tomllib.loads(path.read_text(encoding="utf-8"))
        profile = tomllib.loads((CONFIG / "safety" / f"{p['safety']['profile']}.toml").read_text(encoding="utf-8"))
        yield f"{path.name} anchor_drug", profile["profile"]["anchor_drug"]
        yield from ((f"{path.name} [drugs]", name) for name in p["drugs"])
        yield from ((f"{path.name} induction", s["drug"]) for s in p.get("induction", {}).get("steps", []))
        yield from ((f"{path.name} dose_targets", name) for name in p.get("dose_targets", {}))
        yield from ((f"{path.name} phases", name) for name in p.get("phases", {}).get("start_on_first_dose_of", []))
        yield from ((f"{path.name} interactions", name) for x in p.get("interactions", []) for name in x["drugs"])


def test_every_drug_a_packaged_protocol_names_is_listed() -> None:
    names = list(protocol_drug_names())
    assert len({p for p in (CONFIG / "protocols").glob("*.toml")}) == 3 and len(names) > 30
    assert [(where, name) for where, name in names if DRUGS.canonical(name) is None] == []


#: Every drug or class CLINICAL.md §7 names (and methotrexate, named in issue item 6), as §7 spells it.
SECTION_7 = ["allopurinol", "oxipurinol", "thiopurinol", "febuxostat", "topiroxostat", "ACE inhibitors",
             "co-trimoxazole", "trimethoprim/sulfamethoxazole", "trimethoprim", "ribavirin", "myelosuppressants",
             "cytostatics", "penicillamine", "cimetidine", "indomethacin", "aminosalicylates", "mesalazine",
             "sulfasalazine", "olsalazine", "balsalazide", "warfarin", "mercaptopurine", "methotrexate"]

#: Drugs CLINICAL.md §2.1 and §10 name in AIH and azathioprine regimens.
SECTION_2 = ["azathioprine", "prednisolone", "prednisone", "budesonide", "MMF", "tacrolimus", "infliximab",
             "rituximab", "belimumab"]


@pytest.mark.parametrize("name", SECTION_7 + SECTION_2)
def test_every_drug_clinical_md_names_is_listed(name: str) -> None:
    assert DRUGS.canonical(name) is not None, name


def test_every_generic_name_is_its_own_canonical_form_and_every_entry_cites_a_source() -> None:
    for name, entry in DRUGS.entries.items():
        assert name == fold(name) and DRUGS.canonical(name) == name
        assert entry.sources, name
