"""The protocol loader rejects a bad file with one line naming the file and the key (monitor/protocols/).

Each test copies the packaged config/ into tmp_path, keeps only the AIH protocol (other protocols are
tested by their own authors) and breaks one thing in the protocol or in the safety profile it names.
Since issue 3 the drug-safety schedule lives in config/safety/<profile>.toml, referenced by
`[safety] profile = ...`; a broken schedule is broken there.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.domain.errors import ProtocolError
from monitor.protocols import Library, packaged_library
from tests.unit.config_files import PROFILE_FILE, edit, rejection


def test_an_unbroken_copy_of_the_packaged_config_loads(config: Path) -> None:
    library = Library(config)
    assert list(library.ids()) == ["aih-azathioprine"]
    protocol = library.get("aih-azathioprine")
    assert protocol.thresholds
    assert protocol.safety.id == "conservative-union"


def test_every_packaged_protocol_loads_and_the_aih_protocol_is_one_of_them() -> None:
    assert "aih-azathioprine" in packaged_library().ids()


@pytest.mark.parametrize("profile", ["conservative-union", "bsr-2017", "bsg-sps", "fda"])
def test_the_aih_protocol_loads_with_every_packaged_safety_profile(config: Path, profile: str) -> None:
    # CLINICAL.md §3.2: a site may switch to a single-source profile
    edit(config, 'profile = "conservative-union"', f'profile = "{profile}"')
    protocol = Library(config).get("aih-azathioprine")
    assert protocol.safety.id == profile
    assert protocol.safety.stages[-1].open_ended


#: Broken protocol files: (old, new, key, reason).
BROKEN = [
    pytest.param('reinduction_source = "AASLD10-R31"', 'reinduction_source = "AASLD-31"', "relapse.reinduction_source",
                 "unknown source tag 'AASLD-31'", id="the re-induction proposal citing an unknown source"),
    pytest.param('[interaction_draws]\npanel = "CBC"\nweekly_window_days = 3\nextra_window_days = 7\n'
                 'source = "DESIGN"\n', "", "interaction_draws",
                 "add an [interaction_draws] table", id="interactions asking for counts with no panel or windows"),
    pytest.param('[interaction_draws]\npanel = "CBC"', '[interaction_draws]\npanel = "FBC"', "interaction_draws.panel",
                 "unknown panel 'FBC'", id="interaction counts of an unknown panel"),
    pytest.param("early_record_days = 3 ", "early_record_days = -1 ", "dosing.early_record_days",
                 "greater than or equal to 0", id="a negative early-record allowance"),
    pytest.param('analyte = "WBC"', 'analyte = "WCC"', "thresholds[0].analyte", "unknown analyte 'WCC'",
                 id="unknown analyte in a threshold"),
    pytest.param("below = 3.5 ", "below = 3.5\nabove = 11.0 ", "thresholds[0]",
                 "give exactly one of below, above, above_uln_times", id="a threshold with two bounds"),
    pytest.param('every_days = 7, until_day = 28, window_days = 3, panels = ["LFT", "CBC"], source = "BMJBP"',
                 'every_days = 7, until_day = 28, window_days = 4, panels = ["LFT", "CBC"], source = "BMJBP"',
                 "disease.induction.stages[0]", "windows of neighbouring draws must not overlap",
                 id="a weekly disease stage with ±4 day windows overlaps"),
    pytest.param("at_days = [0]", "at_days = [7, 0]", "disease.baseline.stages[0]", "at_days must be increasing",
                 id="at_days out of order"),
    pytest.param('panels = ["LFT", "CBC"], source = "BMJBP"', 'panels = ["LFT", "CBCS"], source = "BMJBP"',
                 "disease.induction.stages[0].panels", "unknown panel 'CBCS'",
                 id="an unknown panel in a disease stage"),
    pytest.param("flag_lookback_days = 90", "flag_lookbak_days = 90", "protocol.flag_lookbak_days",
                 "Extra inputs are not permitted", id="a typo key in [protocol]"),
    pytest.param("below = 140 ", "belw = 140 ", "thresholds[4].belw", "Extra inputs are not permitted",
                 id="a typo key in a threshold"),
    pytest.param('severity = "action"\naction = "withhold', 'severity = "urgent"\naction = "withhold',
                 "thresholds[0].severity", "Input should be 'watch', 'action' or 'critical'", id="an unknown severity"),
    # steps[6] (was [9]): the taper rows from week 7 moved to [induction.variants] (clinical-safety issue, item 9)
    pytest.param('drug = "azathioprine", from_week = 3', 'drug = "azathioprin", from_week = 3',
                 "induction.steps[6].drug", "unknown drug 'azathioprin'", id="an induction step for an unknown drug"),
    pytest.param('source = "BSR17"\n\n[[thresholds]]\nid = "bsr17/neutrophils-below-1.6"',
                 'source = "BSR-17"\n\n[[thresholds]]\nid = "bsr17/neutrophils-below-1.6"', "thresholds[0].source",
                 "unknown source tag 'BSR-17'", id="a threshold citing an unknown source"),
    pytest.param('phases = ["induction", "reinduction"]', 'phases = ["induction", "relapse"]',
                 "induction.phases[1]", "Input should be", id="an unknown phase"),
    pytest.param('profile = "conservative-union"', 'profile = "conservative"', "safety.profile",
                 "no safety profile 'conservative'; known: bsg-sps, bsr-2017, conservative-union, fda",
                 id="an unknown safety profile names the known ones"),
    pytest.param('after_response = { induction = "maintenance"', 'after_response = { induction = "remission"',
                 "phases.after_response.induction", "Input should be", id="an automatic transition to no phase"),
    pytest.param('start_on_first_dose_of = ["prednisolone", "azathioprine"]',
                 'start_on_first_dose_of = ["prednisolone", "azathioprin"]', "phases.start_on_first_dose_of",
                 "unknown drug 'azathioprin'", id="the first-dose transition names an unknown drug"),
    pytest.param('withdrawal_source = "WITHDRAWAL-DEFAULT"', 'withdrawal_source = "WD"', "phases.withdrawal_source",
                 "unknown source tag 'WD'", id="the withdrawal rule cites an unknown source"),
    pytest.param('repeat_panels = ["LFT", "IGG"]', 'repeat_panels = ["LFT", "IGGG"]', "relapse.repeat_panels",
                 "unknown panel 'IGGG'", id="the relapse repeat draw names an unknown panel"),
    pytest.param("intermediate_factor = 0.5 ", "intermediate_factor = 0.9 ", "genetics.intermediate_factor",
                 "less than or equal to 0.8", id="CPIC18 IM factor outside 30-80%"),
    pytest.param('gate_analyte = "BILI"', 'gate_analyte = "BILLI"', "dosing.gate_analyte", "unknown analyte 'BILLI'",
                 id="the bilirubin gate names an unknown analyte"),
    pytest.param("dose_factor = 0.25", "dose_factor = 1.25", "interactions[0].dose_factor",
                 "less than or equal to 1", id="an interaction that raises the dose"),
    pytest.param('source = "MEDSAFE98"', 'source = "MEDSAFE"', "interactions[0].source",
                 "unknown source tag 'MEDSAFE'", id="an interaction citing an unknown source"),
    pytest.param('analytes = ["WBC", "NEUT", "PLT"', 'analytes = ["WBC", "NEUTS", "PLT"', "trend.analytes",
                 "unknown analyte 'NEUTS'", id="a trend on an unknown analyte"),
    pytest.param('hold_drug = "azathioprine"', 'hold_drug = "azathioprin"', "tightening.hold_drug",
                 "unknown drug 'azathioprin'", id="tightening holds an unknown drug"),
    pytest.param("[drugs.azathioprine]", "[drugs.azathioprin]", "drugs.azathioprin",
                 "unknown drug 'azathioprin' (not in drugs.toml); did you mean azathioprine?",
                 id="a [drugs] table for a drug not in the drug list"),
    pytest.param("[drugs.prednisolone]", "[drugs.Deltacortril]", "drugs.Deltacortril",
                 "'Deltacortril' is another name for 'prednisolone' in drugs.toml; use the generic name",
                 id="a [drugs] table named by a brand: doses are stored under the generic name"),
    pytest.param('"ramipril", "lisinopril"', '"ramipril", "lisinoprl"', "interactions[3].drugs[2]",
                 "unknown drug 'lisinoprl' (not in drugs.toml); did you mean lisinopril?",
                 id="a mistyped interacting drug: no longer silently never matched"),
    pytest.param('drugs = ["ribavirin"]', 'drugs = ["ribavirine"]', "interactions[2].drugs[0]",
                 "unknown drug 'ribavirine'", id="a contraindicated drug mistyped"),
]


@pytest.mark.parametrize(("old", "new", "key", "reason"), BROKEN)
def test_the_loader_rejects_a_broken_protocol_naming_the_file_and_key(
    config: Path, old: str, new: str, key: str, reason: str
) -> None:
    path = edit(config, old, new)
    message = rejection(config)
    assert message.startswith(f"aih-azathioprine.toml: {key}: "), message
    assert reason in message
    assert message.endswith(f"(fix it in {path})")


#: Broken safety profiles (config/safety/conservative-union.toml): (old, new, key, reason).
BROKEN_PROFILE = [
    pytest.param("until_day = 28\nwindow_days = 3", "until_day = 28\nwindow_days = 4", "stages[0]",
                 "windows of neighbouring draws must not overlap", id="a weekly stage with ±4 day windows overlaps"),
    # Changed (schedules item 11): the last stage is monthly now (FDA label [V]), so its windows meet at ±14 days.
    pytest.param("every_days = 28\nwindow_days = 7", "every_days = 28\nwindow_days = 14", "stages[3]",
                 "must not overlap", id="windows exactly meeting overlap too"),
    pytest.param("every_days = 7\n", "every_days = 0\n", "stages[0]", "give every_days (>= 1) or at_days",
                 id="a stage every 0 days"),
    pytest.param("dose_increase = 1", "dose_increse = 1", "restarts.dose_increase", "Field required",
                 id="a typo in [restarts]"),
    pytest.param('[profile]\nid = "conservative-union"', '[profile]\nid = "conservative-union"\nanchor = "x"',
                 "profile.anchor", "Extra inputs are not permitted", id="a typo key in [profile]"),
]


@pytest.mark.parametrize(("old", "new", "key", "reason"), BROKEN_PROFILE)
def test_the_loader_rejects_a_broken_safety_profile_naming_the_profile_file(
    config: Path, old: str, new: str, key: str, reason: str
) -> None:
    path = edit(config, old, new, PROFILE_FILE)
    message = rejection(config)
    assert message.startswith(f"conservative-union.toml: {key}: "), message
    assert reason in message
    assert message.endswith(f"(fix it in {path})")


def test_an_unknown_anchor_drug_is_reported_against_the_protocol(config: Path) -> None:
    # Drugs are defined in the protocol's [drugs]: adding it there is a valid fix, so the protocol is named.
    edit(config, 'anchor_drug = "azathioprine"', 'anchor_drug = "azathioprin"', PROFILE_FILE)
    message = rejection(config)
    assert message.startswith("aih-azathioprine.toml: safety.profile anchor_drug: "), message
    assert "unknown drug 'azathioprin'" in message


@pytest.mark.parametrize(
    ("old", "new", "key", "tag"),
    [
        pytest.param('source = "SAFETY-UNION"\n\n', 'source = "SAFETY"\n\n', "profile.source", "SAFETY",
                     id="the profile cites an unknown source"),
        pytest.param('source = "BSR17"\n\n[[stages]]   # then', 'source = "BSR-17"\n\n[[stages]]   # then',
                     "stages[2].source", "BSR-17", id="a profile stage cites an unknown source"),
        pytest.param('source = "BSR17"\n\n[[stages]]   # then', 'source = "EASL15"\n\n[[stages]]   # then',
                     "stages[2].source", "EASL15", id="a tag only the protocol defines is not enough"),
    ],
)
def test_a_profile_source_tag_must_be_defined_in_the_profile_itself(
    config: Path, old: str, new: str, key: str, tag: str
) -> None:
    # A profile is shared by protocols, so its stages cite only its own [sources] (protocols.load_safety_profile);
    # the error names the profile file and key, like any other broken profile.
    path = edit(config, old, new, PROFILE_FILE)
    assert rejection(config) == (f"conservative-union.toml: {key}: unknown source tag {tag!r}; define it in "
                                 f"[sources] (fix it in {path})")


@pytest.mark.parametrize(
    ("old", "new", "key", "reason"),
    [
        pytest.param('panels = ["CBC", "LFT"]', 'panels = ["CBC", "LFTS"]', "stages[0].panels", "unknown panel 'LFTS'",
                     id="an unknown panel in a profile stage"),
        # Changed (schedules item 11): the last stage is monthly now (every_days = 28, window_days = 7).
        pytest.param("every_days = 28\nwindow_days = 7", "every_days = 28\ncount = 4\nwindow_days = 7",
                     "stages[3]", "the last stage must be open-ended", id="a last profile stage with a count"),
        pytest.param("every_days = 28\nwindow_days = 7", "every_days = 28\nuntil_day = 730\nwindow_days = 7",
                     "stages[3]", "the last stage must be open-ended", id="a last profile stage with until_day"),
    ],
)
def test_a_broken_profile_stage_is_reported_against_the_profile_file(
    config: Path, old: str, new: str, key: str, reason: str
) -> None:
    # Found by this tier: protocols._check_refs reported these against aih-azathioprine.toml, which has no stages
    # to fix; protocols.load_safety_profile now checks them and names the profile file and stage.
    path = edit(config, old, new, PROFILE_FILE)
    message = rejection(config)
    assert reason in message
    assert message.startswith(f"conservative-union.toml: {key}: "), message
    assert message.endswith(f"(fix it in {path})"), message


def test_invalid_toml_is_one_error_naming_the_file_and_line(config: Path) -> None:
    path = edit(config, "[drugs.azathioprine]", "[drugs.azathioprine")
    line = path.read_text(encoding="utf-8").splitlines().index("[drugs.azathioprine") + 1
    message = rejection(config)
    assert message.startswith(f"{path}: not valid TOML: ")
    assert f"line {line}" in message


def test_invalid_toml_in_a_safety_profile_names_the_profile(config: Path) -> None:
    path = edit(config, "[profile]", "[profile", PROFILE_FILE)
    assert rejection(config).startswith(f"{path}: not valid TOML: ")


def test_a_protocol_whose_id_is_not_its_file_name_is_rejected(config: Path) -> None:
    edit(config, 'id = "aih-azathioprine"', 'id = "aih-aza"')
    assert rejection(config) == "aih-azathioprine.toml: protocol.id 'aih-aza' must match the file name"


@pytest.mark.parametrize(
    ("file", "old", "new", "start", "reason"),
    [
        pytest.param("analytes.toml", 'units = { "g/L" = 1, "g/dL" = 10 }', 'units = { "g/L" = 10, "g/dL" = 10 }',
                     "analytes.toml: analytes.ALB: ", "the canonical unit 'g/L' must be in units with factor 1",
                     id="analytes: canonical unit without factor 1"),
        pytest.param("analytes.toml", 'panel = "CBC"', 'pannel = "CBC"', "analytes.toml: analytes.WBC.",
                     "", id="analytes: typo key"),
        pytest.param("analytes.toml", '"PLT" = "PLT"', '"PLT" = "PLTS"', "analytes.toml: local_codes.PLT: ",
                     "unknown analyte 'PLTS'", id="analytes: local code for an unknown analyte"),
        pytest.param("analytes.toml", "plausible = { low = 0.01, high = 500 }", "plausible = { low = 0, high = 500 }",
                     "analytes.toml: analytes.WBC: ", "plausible.low must be above 0",
                     id="analytes: a plausible low of 0 (zero_possible says whether 0 is)"),
        pytest.param("analytes.toml", "plausible = { low = 0.001, high = 300 }",
                     "plausible = { low = -1, high = 300 }", "analytes.toml: analytes.NEUT: ",
                     "plausible.low must be above 0", id="analytes: a negative plausible low"),
        pytest.param("analytes.toml", '"26511-6" = { count = "NEUT"', '"26511-6" = { count = "NEUTS"',
                     "analytes.toml: differential.percent.26511-6.count: ", "unknown analyte 'NEUTS'",
                     id="differential: a % for an unknown analyte"),
        pytest.param("analytes.toml", '"713-8" = { count = "EOS"', '"711-2" = { count = "EOS"',
                     "analytes.toml: differential.percent.711-2: ", "must not also be an analyte's",
                     id="differential: an absolute-count code listed as a %"),
        pytest.param("analytes.toml", '"736-9" = { count = "LYMPH", source = "CLINICAL.md §9.1 [V]" }',
                     '"736-9" = { count = "LYMPH", source = "a blog" }',
                     "analytes.toml: differential.percent.736-9.source: ", "String should match pattern",
                     id="differential: a % without its CLINICAL.md source tag"),
        pytest.param("analytes.toml", '"770-8" = { count = "NEUT"', '"770-8" = { count = "HGB"',
                     "analytes.toml: differential.percent.770-8.count: ", "HGB must accept every WBC unit",
                     id="differential: a count that cannot take the WBC's unit"),
        pytest.param("analytes.toml", 'leukocytes = "WBC"', 'leukocytes = "LEUK"',
                     "analytes.toml: differential.leukocytes: ", "unknown analyte 'LEUK'",
                     id="differential: unknown leukocyte analyte"),
        pytest.param("grading/ctcae-5.0.toml", 'direction = "below"', 'direction = "under"',
                     "ctcae-5.0.toml: terms.WBC.direction: ", "Input should be 'below' or 'above_uln_times'",
                     id="grading: unknown direction"),
        pytest.param("grading/ctcae-5.0.toml", "[terms.GGT]", "[terms.GGTX]", "aih-azathioprine.toml: grading: ",
                     "CTCAE term for unknown analyte 'GGTX'", id="grading: a term for an unknown analyte"),
    ],
)
def test_the_loader_rejects_broken_analyte_and_grading_files(
    config: Path, file: str, old: str, new: str, start: str, reason: str
) -> None:
    edit(config, old, new, file)
    message = rejection(config)
    assert message.startswith(start), message
    assert reason in message


#: Broken drug lists (config/drugs.toml): (old, new, start of the error, reason).
BROKEN_DRUG_LIST = [
    pytest.param('brands = ["Adenuric", "Uloric", "Feburic"]', 'brands = ["Adenuric", "Zyloprim"]',
                 "drugs.toml: drugs.febuxostat.brands: ", "'Zyloprim' is already a name of 'allopurinol'",
                 id="one brand for two drugs"),
    pytest.param('synonyms = ["mesalamine", "5-aminosalicylic acid"]', 'synonyms = ["Mesalamine", "sulphasalazine"]',
                 "drugs.toml: drugs.sulfasalazine.synonyms: ", "'sulphasalazine' is already a name of 'mesalazine'",
                 id="one synonym for two drugs, case folded"),
    pytest.param("[drugs.thiopurinol]", "[drugs.Thiopurinol]", "drugs.toml: drugs.Thiopurinol: ",
                 "the generic name (the key) must be lower case with single spaces", id="a generic name in capitals"),
    pytest.param('"quinapril", "ramipril"', '"quinapril", "ramiprl"', 'drugs.toml: classes.ace inhibitor.members: ',
                 "unknown drug 'ramiprl'; add a [drugs.ramiprl] table", id="a class member not in the list"),
    pytest.param('sources = ["CLINICAL7"]\n\n[drugs.febuxostat]', 'sources = ["CLINICAL-7"]\n\n[drugs.febuxostat]',
                 "drugs.toml: drugs.thiopurinol.sources: ", "unknown source tag 'CLINICAL-7'",
                 id="an entry citing an undefined source"),
    pytest.param('[drugs.thiopurinol]   # CLINICAL.md §7 [V]\nsources = ["CLINICAL7"]',
                 "[drugs.thiopurinol]", "drugs.toml: drugs.thiopurinol.sources: ", "Field required",
                 id="an entry citing no source"),
    pytest.param('brands = ["Topiloric", "Uriadec"]', 'brand = ["Topiloric", "Uriadec"]',
                 "drugs.toml: drugs.topiroxostat.brand: ", "Extra inputs are not permitted", id="a typo key"),
]


@pytest.mark.parametrize(("old", "new", "start", "reason"), BROKEN_DRUG_LIST)
def test_the_loader_rejects_a_broken_drug_list_naming_the_file_and_key(
    config: Path, old: str, new: str, start: str, reason: str
) -> None:
    path = edit(config, old, new, "drugs.toml")
    message = rejection(config)
    assert message.startswith(start), message
    assert reason in message
    assert message.endswith(f"(fix it in {path})")


def test_an_interaction_may_name_a_drug_by_a_brand_and_matches_its_generic_name(config: Path) -> None:
    # "trimethoprim-sulfamethoxazole" in a protocol and "co-trimoxazole" recorded were two names; now one drug
    edit(config, '"co-trimoxazole", "trimethoprim-sulfamethoxazole"', '"Septrin"')
    protocol = Library(config).get("aih-azathioprine")
    (watch,) = [x for x in protocol.interactions if x.id == "watch-counts"]
    assert "co-trimoxazole" in watch.drugs and "Septrin" not in watch.drugs
    assert protocol.interacts("Bactrim", watch) and protocol.interacts("trimethoprim/sulfamethoxazole", watch)


def test_a_class_in_an_interaction_covers_every_member_of_the_class() -> None:
    # CLINICAL.md §7: ACE inhibitors (SmPC) - captopril is not in the protocol file's list, the class is
    protocol = packaged_library().get("aih-azathioprine")
    (watch,) = [x for x in protocol.interactions if x.id == "watch-counts"]
    assert {"captopril", "quinapril", "trandolapril", "ace inhibitor"} <= set(watch.drugs)
    # Changed (schedules item 13): the aminosalicylates have a rule of their own (Imuran label, CLINICAL.md §7),
    # which names the class
    (aminosalicylates,) = [x for x in protocol.interactions if x.id == "aminosalicylates"]
    assert set(aminosalicylates.drugs) == {"aminosalicylate", "mesalazine", "sulfasalazine", "olsalazine",
                                           "balsalazide"}


def test_a_site_adds_a_drug_to_its_drug_list_before_its_protocol_may_name_it(config: Path) -> None:
    # Changed (schedules item 13): the aminosalicylates rule (interactions[4]) names the class alone.
    edit(config, 'drugs = ["aminosalicylate"]', 'drugs = ["aminosalicylate", "leflunomide"]')
    assert "interactions[4].drugs[1]: unknown drug 'leflunomide'" in rejection(config)
    with (config / "drugs.toml").open("a", encoding="utf-8") as f:
        f.write('\n[drugs.leflunomide]   # a site addition\nbrands = ["Arava"]\nsources = ["MEMORY"]\n')
    protocol = Library(config).get("aih-azathioprine")
    (watch,) = [x for x in protocol.interactions if x.id == "aminosalicylates"]
    assert protocol.interacts("Arava", watch)


def test_a_directory_without_a_drug_list_is_rejected_with_a_hint(config: Path) -> None:
    (config / "drugs.toml").unlink()
    with pytest.raises(ProtocolError, match="no drugs.toml; a protocols directory needs analytes.toml, drugs.toml"):
        Library(config)


def test_a_directory_without_analytes_is_rejected_with_a_hint(tmp_path: Path) -> None:
    (tmp_path / "protocols").mkdir()
    with pytest.raises(ProtocolError, match="no analytes.toml; a protocols directory needs"):
        Library(tmp_path)


def test_an_unknown_protocol_id_names_the_known_ones(config: Path) -> None:
    with pytest.raises(ProtocolError, match=r"unknown protocol 'aih'; known: aih-azathioprine"):
        Library(config).get("aih")


def test_a_dose_target_for_an_unknown_drug_is_rejected(config: Path) -> None:
    # A typo here would silently drop the 1-2 mg/kg clamp: a 40 kg patient would be told 100 mg (2.5 mg/kg).
    edit(config, "[dose_targets.azathioprine]", "[dose_targets.azathioprin]")
    message = rejection(config)
    assert message.startswith("aih-azathioprine.toml: dose_targets.azathioprin"), message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        pytest.param('source = "EASL15"\nsteps', 'source = "EASL-15"\nsteps', "induction.source", id="induction"),
        pytest.param('max_mg_per_kg = 2.0               # EASL15 [S]; AASLD10 rec. 31 [V] 2 mg/kg maintenance\n'
                     'source = "EASL15"',
                     'max_mg_per_kg = 2.0\nsource = "EASL-15"', "dose_targets.azathioprine.source", id="dose target"),
    ],
)
def test_every_source_tag_must_be_in_sources(config: Path, old: str, new: str, key: str) -> None:
    # an unchecked tag would appear raw in the `why` of every item it explains
    edit(config, old, new)
    message = rejection(config)
    assert message.startswith(f"aih-azathioprine.toml: {key}: "), message
    assert "unknown source tag" in message
