"""Rule-based finding-sentence extraction: sections, sentences, cues, locations, merging."""

from __future__ import annotations

import re

import numpy as np
import pytest

from radzero.data import benchmarks
from radzero.data.phantom import FINDINGS, generate_case
from radzero.data.sentences import (
    DEVICE_VOCABULARY,
    FINDINGS_VOCABULARY,
    canonical_finding,
    extract_findings,
)

SENTENCE = re.compile(
    r"^There (?:is|may be|is no) [a-z][a-z -]*[a-z](?: of [a-z][a-z -]*[a-z])?\.$"
)
TEMPORAL = re.compile(
    r"\b(?:new|improv\w*|unchanged|worse\w*|stable|persist\w*|increas\w*|decreas\w*|resol\w*"
    r"|consistent|again|interval|compared|prior|previous\w*|change\w*)\b"
)


def test_seed_example_from_the_paper() -> None:
    report = (
        "Left retrocardiac opacity has substantially improved, likely due to atelectasis. "
        "Pigtail pleural catheter remaining in place and no visible pneumothorax."
    )
    assert extract_findings(report) == [
        "There is opacity of left retrocardiac region.",
        "There may be atelectasis.",
        "There is chest tube.",
        "There is no pneumothorax.",
    ]


# ---------------------------------------------------------------------------------- negation


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("No pneumothorax.", ["There is no pneumothorax."]),
        ("There is no pleural effusion.", ["There is no pleural effusion."]),
        ("No evidence of pneumonia.", ["There is no pneumonia."]),
        ("Lungs are well expanded without consolidation.", ["There is no consolidation."]),
        ("The lungs are clear of consolidation.", ["There is no consolidation."]),
        ("The right lung is free of nodules.", ["There is no nodule."]),
        ("Negative for pneumothorax.", ["There is no pneumothorax."]),
        ("A pneumothorax is not seen.", ["There is no pneumothorax."]),
        ("Pleural effusion is not identified.", ["There is no pleural effusion."]),
        ("Pulmonary edema is absent.", ["There is no edema."]),
        ("The right pneumothorax has resolved.", ["There is no pneumothorax of right hemithorax."]),
        ("Interval resolution of pulmonary edema.", ["There is no edema."]),
        (
            "Basilar opacity, atelectasis rather than pneumonia.",
            [
                "There is opacity of lung base.",
                "There is atelectasis.",
                "There is no pneumonia.",
            ],
        ),
        ("The nasogastric tube has been removed.", ["There is no nasogastric tube."]),
        ("Pneumothorax is no longer visualized.", ["There is no pneumothorax."]),
    ],
)
def test_negation_cues(report: str, expected: list[str]) -> None:
    assert extract_findings(report) == expected


@pytest.mark.parametrize(
    "report",
    [
        "No focal consolidation, pleural effusion, or pneumothorax.",
        "There is no focal consolidation, effusion or pneumothorax.",
        "Without consolidation, pleural effusion or pneumothorax.",
        "Consolidation, pleural effusion and pneumothorax are not seen.",
    ],
)
def test_negation_spreads_over_a_list(report: str) -> None:
    assert extract_findings(report) == [
        "There is no consolidation.",
        "There is no pleural effusion.",
        "There is no pneumothorax.",
    ]


@pytest.mark.parametrize(
    "report",
    [
        "No pneumothorax, but a small left pleural effusion is present.",
        "No pneumothorax; however, there is a small left pleural effusion.",
        "No pneumothorax, although a small left pleural effusion is noted.",
        "No pneumothorax and a small left pleural effusion is present.",
    ],
)
def test_negation_stops_at_a_clause_boundary(report: str) -> None:
    assert extract_findings(report) == [
        "There is no pneumothorax.",
        "There is pleural effusion of left hemithorax.",
    ]


def test_negation_with_a_hedge_word_stays_negative() -> None:
    assert extract_findings("No suspicious pulmonary nodule or mass.") == [
        "There is no nodule.",
        "There is no mass.",
    ]
    assert extract_findings("No findings suggestive of pneumonia.") == ["There is no pneumonia."]
    assert extract_findings("No focal consolidation to suggest pneumonia.") == [
        "There is no consolidation.",
        "There is no pneumonia.",
    ]


# ------------------------------------------------------------------------------- uncertainty


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("There may be a small right pleural effusion.", ["pleural effusion of right hemithorax"]),
        ("Mild bibasilar atelectasis might be present.", ["atelectasis of bilateral lung bases"]),
        ("Possible left lower lobe pneumonia.", ["pneumonia of left lower lobe"]),
        ("Possibly a small pneumothorax.", ["pneumothorax"]),
        ("Probable right middle lobe atelectasis.", ["atelectasis of right middle lobe"]),
        ("Likely small bilateral effusions.", ["pleural effusion of bilateral hemithoraces"]),
        ("Early pneumonia cannot be excluded.", ["pneumonia"]),
        ("A small pneumothorax cannot be ruled out.", ["pneumothorax"]),
        ("Findings are suggestive of pulmonary edema.", ["edema"]),
        ("Appearance is suspicious for a mass.", ["mass"]),
        ("Questionable nodule in the left upper zone.", ["nodule of left upper zone"]),
        ("Appearance is concerning for pneumonia.", ["pneumonia"]),
        ("This could represent aspiration pneumonia.", ["pneumonia"]),
        ("This could represent aspiration.", ["aspiration"]),
        ("Findings may represent a nodule.", ["nodule"]),
        ("Heart size is borderline enlarged.", ["cardiomegaly"]),
        ("The heart may be mildly enlarged.", ["cardiomegaly"]),
        ("A small left apical pneumothorax may be present.", ["pneumothorax of left apex"]),
    ],
)
def test_uncertainty_cues(report: str, expected: list[str]) -> None:
    assert extract_findings(report) == [f"There may be {text}." for text in expected]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            "Retrocardiac opacity, likely due to atelectasis.",
            ["There is opacity of retrocardiac region.", "There may be atelectasis."],
        ),
        (
            "Right basilar opacity, atelectasis versus pneumonia.",
            [
                "There is opacity of right lung base.",
                "There may be atelectasis.",
                "There may be pneumonia.",
            ],
        ),
        (
            "Left lower lobe opacity; differential includes atelectasis and pneumonia.",
            [
                "There is opacity of left lower lobe.",
                "There may be atelectasis.",
                "There may be pneumonia.",
            ],
        ),
        (
            "Possible atelectasis or consolidation.",
            ["There may be atelectasis.", "There may be consolidation."],
        ),
        (
            "Small effusions and bibasilar atelectasis cannot be excluded.",
            [
                "There may be pleural effusion.",
                "There may be atelectasis of bilateral lung bases.",
            ],
        ),
        (
            "Right pleural effusion with overlying atelectasis, consolidation not excluded.",
            [
                "There is pleural effusion of right hemithorax.",
                "There is atelectasis.",
                "There may be consolidation.",
            ],
        ),
        (
            "No pneumothorax, possible small left effusion.",
            ["There is no pneumothorax.", "There may be pleural effusion of left hemithorax."],
        ),
    ],
)
def test_uncertainty_scope(report: str, expected: list[str]) -> None:
    assert extract_findings(report) == expected


# -------------------------------------------------------------------------------- comparison


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("New small left pleural effusion.", ["There is pleural effusion of left hemithorax."]),
        (
            "Improved right lower lobe consolidation.",
            ["There is consolidation of right lower lobe."],
        ),
        ("Moderate cardiomegaly is unchanged.", ["There is cardiomegaly."]),
        ("Worsened pulmonary edema.", ["There is edema."]),
        ("Stable 8 mm nodule in the right upper lobe.", ["There is nodule of right upper lobe."]),
        ("Persistent left basilar atelectasis.", ["There is atelectasis of left lung base."]),
        (
            "Increased bilateral pleural effusions.",
            ["There is pleural effusion of bilateral hemithoraces."],
        ),
        (
            "Decreased size of the right apical pneumothorax.",
            ["There is pneumothorax of right apex."],
        ),
        ("Resolving right upper lobe pneumonia.", ["There is pneumonia of right upper lobe."]),
        ("Findings consistent with pulmonary edema.", ["There is edema."]),
        ("Left pleural effusion is again seen.", ["There is pleural effusion of left hemithorax."]),
        (
            "Interval increase in right pleural effusion.",
            ["There is pleural effusion of right hemithorax."],
        ),
        (
            "Compared with prior, the mass in the left hilum is larger.",
            ["There is mass of left hilum."],
        ),
        (
            "No change in small left pleural effusion.",
            ["There is pleural effusion of left hemithorax."],
        ),
        (
            "Right pleural effusion has nearly resolved.",
            ["There is pleural effusion of right hemithorax."],
        ),
        ("Left pneumothorax has resolved.", ["There is no pneumothorax of left hemithorax."]),
    ],
)
def test_comparison_wording_is_dropped(report: str, expected: list[str]) -> None:
    found = extract_findings(report)
    assert found == expected
    assert not any(TEMPORAL.search(sentence) for sentence in found)


# --------------------------------------------------------------------------------- locations


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Right upper lobe consolidation.", "consolidation of right upper lobe"),
        ("Consolidation in the left lower lobe.", "consolidation of left lower lobe"),
        ("Opacity in the right middle lobe.", "opacity of right middle lobe"),
        ("Patchy opacity in the lingula.", "opacity of lingula"),
        ("Lingular atelectasis.", "atelectasis of lingula"),
        ("Nodule in the left upper zone.", "nodule of left upper zone"),
        ("Mass in the right mid zone.", "mass of right mid zone"),
        ("Opacity in the right mid lung.", "opacity of right mid zone"),
        ("Effusion at the left lung base.", "pleural effusion of left lung base"),
        ("Opacity at the right base.", "opacity of right lung base"),
        ("Atelectasis at the bases.", "atelectasis of bilateral lung bases"),
        ("Bibasilar atelectasis.", "atelectasis of bilateral lung bases"),
        ("Left basilar opacity.", "opacity of left lung base"),
        ("Pneumothorax at the left apex.", "pneumothorax of left apex"),
        ("Small right apical pneumothorax.", "pneumothorax of right apex"),
        (
            "Effusion at the right costophrenic angle.",
            "pleural effusion of right costophrenic angle",
        ),
        ("Blunting of the left costophrenic angle.", "blunting of left costophrenic angle"),
        ("Large pneumothorax in the right hemithorax.", "pneumothorax of right hemithorax"),
        ("Left retrocardiac opacity.", "opacity of left retrocardiac region"),
        ("Retrocardiac atelectasis.", "atelectasis of retrocardiac region"),
        ("Bilateral perihilar opacities.", "opacity of bilateral perihilar regions"),
        ("Left pleural effusion.", "pleural effusion of left hemithorax"),
        ("Small left-sided pleural effusion.", "pleural effusion of left hemithorax"),
        ("Bilateral pleural effusions.", "pleural effusion of bilateral hemithoraces"),
        ("Right lung nodule.", "nodule of right lung"),
        ("Patchy opacities bilaterally.", "opacity of bilateral lungs"),
        ("Bilateral upper lobe opacities.", "opacity of bilateral upper lobes"),
        ("Opacity in the lateral aspect of the right lung base.", "opacity of right lung base"),
        ("Solid nodular opacity projecting over the left mid lung.", "nodule of left mid zone"),
        ("Vague nodular opacity projecting over the left mid lung.", "opacity of left mid zone"),
        (
            "Subcutaneous emphysema in the right chest wall.",
            "subcutaneous emphysema of right chest wall",
        ),
        ("Calcified granuloma in the left upper lobe.", "granuloma of left upper lobe"),
        ("Bilateral apical pleural thickening.", "pleural thickening of bilateral apices"),
    ],
)
def test_locations_are_normalised(report: str, expected: str) -> None:
    assert extract_findings(report) == [f"There is {expected}."]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            "Right upper and lower lobe opacities.",
            ["opacity of right upper lobe", "opacity of right lower lobe"],
        ),
        (
            "Right middle lobe and lingular opacities.",
            ["opacity of right middle lobe", "opacity of lingula"],
        ),
        (
            "Consolidation in the right lower lobe and left lower lobe.",
            ["consolidation of right lower lobe", "consolidation of left lower lobe"],
        ),
        (
            "Opacity in the right lower lobe and left lower lobe atelectasis.",
            ["opacity of right lower lobe", "atelectasis of left lower lobe"],
        ),
    ],
)
def test_coordinated_locations(report: str, expected: list[str]) -> None:
    assert extract_findings(report) == [f"There is {text}." for text in expected]


def test_sizes_grades_and_devices_have_no_location() -> None:
    report = (
        "Large 2.8 cm mass in the right upper lobe. Left-sided pacemaker with leads in the right "
        "atrium and right ventricle. Moderate cardiomegaly."
    )
    assert extract_findings(report) == [
        "There is mass of right upper lobe.",
        "There is pacemaker.",
        "There is cardiomegaly.",
    ]


# -------------------------------------------------------------------- several findings, merging


def test_several_findings_in_one_sentence() -> None:
    report = (
        "Moderate cardiomegaly with mild pulmonary vascular congestion, small bilateral pleural "
        "effusions and bibasilar atelectasis."
    )
    assert extract_findings(report) == [
        "There is cardiomegaly.",
        "There is vascular congestion.",
        "There is pleural effusion of bilateral hemithoraces.",
        "There is atelectasis of bilateral lung bases.",
    ]
    assert extract_findings("Bilateral perihilar opacities consistent with pulmonary edema.") == [
        "There is opacity of bilateral perihilar regions.",
        "There is edema.",
    ]


def test_duplicates_across_sections_are_merged() -> None:
    report = (
        "FINDINGS: There is a moderate right pleural effusion. Right lower lobe consolidation. "
        "No pneumothorax. Heart size is normal.\n"
        "IMPRESSION: 1. Right pleural effusion and right lower lobe consolidation, concerning for "
        "pneumonia. 2. No pneumothorax."
    )
    assert extract_findings(report) == [
        "There is pleural effusion of right hemithorax.",
        "There is consolidation of right lower lobe.",
        "There is no pneumothorax.",
        "There is no cardiomegaly.",
        "There may be pneumonia.",
    ]


def test_located_mention_wins_and_distinct_locations_stay() -> None:
    report = (
        "FINDINGS: Small effusion at the left costophrenic angle. Nodule in the right upper lobe "
        "and a second nodule in the left lower lobe.\nIMPRESSION: Small effusion. Nodules."
    )
    assert extract_findings(report) == [
        "There is pleural effusion of left costophrenic angle.",
        "There is nodule of right upper lobe.",
        "There is nodule of left lower lobe.",
    ]


def test_conflicting_statuses_follow_the_documented_rules() -> None:
    # a global negative gives way to a positive statement of the same finding
    assert extract_findings("No large pleural effusion. Small left pleural effusion.") == [
        "There is pleural effusion of left hemithorax."
    ]
    assert extract_findings(
        "Lungs are clear except for right lower lobe consolidation. No consolidation elsewhere."
    ) == ["There is consolidation of right lower lobe."]
    # same finding and place: the most certain status is kept
    assert extract_findings(
        "FINDINGS: Possible left lower lobe pneumonia.\nIMPRESSION: Left lower lobe pneumonia."
    ) == ["There is pneumonia of left lower lobe."]
    # a located negative and a positive elsewhere are both kept
    assert extract_findings("Small left pleural effusion. No right pleural effusion.") == [
        "There is pleural effusion of left hemithorax.",
        "There is no pleural effusion of right hemithorax.",
    ]


# ------------------------------------------------------------------------ sections, sentences


def test_findings_and_impression_sections_only() -> None:
    report = (
        "EXAMINATION: CHEST (PA AND LAT)\n\n"
        "INDICATION: ___ year old man with fever, evaluate for pneumonia or effusion.\n\n"
        "TECHNIQUE: Chest PA and lateral.\n\n"
        "COMPARISON: Prior study with a left pneumothorax.\n\n"
        "FINDINGS:\n\n"
        "The lungs are clear. No pleural effusion.\n\n"
        "IMPRESSION:\n\n"
        "No acute cardiopulmonary process.\n"
    )
    assert extract_findings(report) == [
        "There is no consolidation.",
        "There is no pleural effusion.",
    ]


def test_section_headers_in_other_spellings() -> None:
    report = "Clinical history: cough.\nFindings: Small right effusion. Conclusion: Mild edema."
    assert extract_findings(report) == [
        "There is pleural effusion of right hemithorax.",
        "There is edema.",
    ]
    report = "Portable AP chest COMPARISON: None FINDINGS: Left effusion IMPRESSION: Effusion."
    assert extract_findings(report) == ["There is pleural effusion of left hemithorax."]
    assert extract_findings("IMPRESSION\nCardiomegaly without edema.") == [
        "There is cardiomegaly.",
        "There is no edema.",
    ]


def test_labelled_lines_inside_findings() -> None:
    report = "FINDINGS:\nLungs: Clear.\nPleura: No effusion.\nHeart: Enlarged.\nTubes: None."
    assert extract_findings(report) == [
        "There is no consolidation.",
        "There is no pleural effusion.",
        "There is cardiomegaly.",
    ]


def test_text_without_findings_or_impression_is_used_whole() -> None:
    assert extract_findings("Small left pneumothorax. No effusion.") == [
        "There is pneumothorax of left hemithorax.",
        "There is no pleural effusion.",
    ]
    report = "INDICATION: rule out pneumonia.\n\nHeart is enlarged. Mild pulmonary edema."
    assert extract_findings(report) == ["There is cardiomegaly.", "There is edema."]


def test_numbered_impressions_and_decimals() -> None:
    report = (
        "IMPRESSION: 1. 2.8 cm mass in the right upper lobe. 2. Small effusion. "
        "3. No pneumothorax.\n4) Possible left basilar atelectasis."
    )
    assert extract_findings(report) == [
        "There is mass of right upper lobe.",
        "There is pleural effusion.",
        "There is no pneumothorax.",
        "There may be atelectasis of left lung base.",
    ]


def test_wrapped_lines_abbreviations_and_semicolons() -> None:
    report = (
        "FINDINGS: There is no focal consolidation, pleural\n"
        " effusion or pneumothorax. A nodule measuring approx. 1.2 cm is seen in the\n"
        " right upper lobe; possible atelectasis at the left base. Findings were discussed\n"
        " with Dr. Smith.\n"
        "Heart size normal\n"
        "ET tube in standard position"
    )
    assert extract_findings(report) == [
        "There is no consolidation.",
        "There is no pleural effusion.",
        "There is no pneumothorax.",
        "There is nodule of right upper lobe.",
        "There may be atelectasis of left lung base.",
        "There is no cardiomegaly.",
        "There is endotracheal tube.",
    ]


# ---------------------------------------------------------------------- vocabulary, devices


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Small effusions.", "pleural effusion"),
        ("Layering pleural fluid.", "pleural effusion"),
        ("Enlarged heart.", "cardiomegaly"),
        ("The heart is enlarged.", "cardiomegaly"),
        ("The cardiac silhouette is enlarged.", "cardiomegaly"),
        ("Enlarged cardiac silhouette.", "cardiomegaly"),
        ("Airspace consolidation.", "consolidation"),
        ("Pulmonary nodule.", "nodule"),
        ("Nodular opacity.", "opacity"),
        ("8 mm nodular opacity.", "nodule"),
        ("Mass lesion.", "mass"),
        ("Pulmonary edema.", "edema"),
        ("Interstitial edema.", "edema"),
        ("Pneumonia.", "pneumonia"),
        ("Opacities.", "opacity"),
        ("Opacification.", "opacity"),
        ("Consolidative opacity.", "consolidation"),
        ("Infiltrates.", "infiltration"),
        ("Pneumothoraces.", "pneumothorax"),
        ("Emphysematous changes.", "emphysema"),
        ("Fibrotic changes.", "fibrosis"),
        ("Pleural plaques.", "pleural thickening"),
        ("Hiatal hernia.", "hernia"),
        ("Rib fractures.", "fracture"),
        ("Calcifications.", "calcification"),
        ("Granulomas.", "granuloma"),
        ("Scarring.", "scarring"),
        ("Hyperinflated lungs.", "hyperinflation"),
        ("Widened mediastinum.", "enlarged cardiomediastinum"),
        ("Pulmonary vascular congestion.", "vascular congestion"),
        ("Hilar enlargement.", "hilar enlargement"),
        ("Subcutaneous air.", "subcutaneous emphysema"),
        ("Free air under the diaphragm.", "pneumoperitoneum"),
        ("Lobar collapse.", "atelectasis"),
    ],
)
def test_synonyms_are_normalised(report: str, expected: str) -> None:
    assert extract_findings(report) == [f"There is {expected}."]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("ET tube terminates 4 cm above the carina.", "endotracheal tube"),
        ("Endotracheal tube in standard position.", "endotracheal tube"),
        ("Tracheostomy tube in place.", "tracheostomy tube"),
        ("NG tube courses below the diaphragm.", "nasogastric tube"),
        ("Enteric tube tip in the stomach.", "nasogastric tube"),
        ("Dobhoff feeding tube in the duodenum.", "nasogastric tube"),
        ("Right IJ central venous catheter tip in the SVC.", "central venous catheter"),
        ("Left PICC line tip in the mid SVC.", "peripherally inserted central catheter"),
        ("Swan-Ganz catheter tip in the right pulmonary artery.", "pulmonary artery catheter"),
        ("Right chest tube in place.", "chest tube"),
        ("Left pigtail catheter is unchanged.", "chest tube"),
        ("Dual-chamber pacemaker leads in standard position.", "pacemaker"),
        ("Left-sided AICD.", "pacemaker"),
        ("Median sternotomy wires are intact.", "sternotomy wires"),
        ("Surgical clips in the right axilla.", "surgical clips"),
        ("Lines and tubes are in unchanged position.", "support device"),
    ],
)
def test_devices(report: str, expected: str) -> None:
    assert expected in DEVICE_VOCABULARY
    assert extract_findings(report) == [f"There is {expected}."]


def test_device_removal_and_extubation_are_negative() -> None:
    assert extract_findings("The patient has been extubated. Interval removal of the PICC.") == [
        "There is no endotracheal tube.",
        "There is no peripherally inserted central catheter.",
    ]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Heart size is normal.", ["cardiomegaly"]),
        ("The cardiac silhouette is normal in size.", ["cardiomegaly"]),
        ("Normal heart size.", ["cardiomegaly"]),
        ("The heart is not enlarged.", ["cardiomegaly"]),
        (
            "The cardiomediastinal silhouette is within normal limits.",
            ["cardiomegaly", "enlarged cardiomediastinum"],
        ),
        (
            "Heart size, mediastinal and hilar contours are normal.",
            ["cardiomegaly", "enlarged cardiomediastinum", "hilar enlargement"],
        ),
        ("The costophrenic angles are sharp.", ["pleural effusion"]),
        ("The lungs are clear.", ["consolidation"]),
        ("Lungs are well expanded and clear.", ["consolidation"]),
        ("The visualized osseous structures are intact.", ["fracture"]),
        ("No acute osseous abnormality.", ["fracture"]),
        ("Normal pulmonary vascularity.", ["vascular congestion"]),
        ("No subdiaphragmatic free air.", ["pneumoperitoneum"]),
        ("The hila are unremarkable.", ["hilar enlargement"]),
    ],
)
def test_normal_statements_imply_absence(report: str, expected: list[str]) -> None:
    assert extract_findings(report) == [f"There is no {name}." for name in expected]


@pytest.mark.parametrize(
    "report",
    [
        "Heart size is top normal.",
        "The heart is at the upper limits of normal in size.",
        "No acute cardiopulmonary process.",
        "Normal chest radiograph.",
        "The trachea is midline.",
        "Lung volumes are normal.",
        "Mass effect on the trachea is not seen.",
    ],
)
def test_statements_without_findings(report: str) -> None:
    assert extract_findings(report) == []


def test_empty_reports_and_wrong_types() -> None:
    assert extract_findings("") == []
    assert extract_findings("  \n\t ") == []
    with pytest.raises(TypeError):
        extract_findings(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        extract_findings(b"No pneumothorax.")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        canonical_finding(3)  # type: ignore[arg-type]


def test_odd_text_never_raises() -> None:
    rng = np.random.default_rng(0)
    words = "no not possible effusion left right lobe base , . ; : ( ) / - 1. 2.8 cm ___"
    pieces = [
        *words.split(" "),
        "FINDINGS:",
        "IMPRESSION:",
        "\n",
        "\n\n",
        "versus",
        "resolved",
        "clear of",
        "the lungs are",
        "heart enlarged",
        "é•’\u00a0",
        "and or",
    ]
    for _ in range(200):
        text = " ".join(rng.choice(pieces, size=int(rng.integers(0, 40))))
        for sentence in extract_findings(text):
            assert SENTENCE.match(sentence), sentence
    assert extract_findings("?!.;:,,,()[]") == []


# ----------------------------------------------------------------------- vocabulary mapping

BENCHMARK_CLASSES = {
    name
    for reader in (benchmarks.CheXpert, benchmarks.ChestXray14, benchmarks.ChestXDet10)
    for name in reader.pathologies
    if name != "No Finding"
}


@pytest.mark.parametrize("name", sorted(BENCHMARK_CLASSES))
def test_benchmark_classes_map_into_the_vocabulary(name: str) -> None:
    assert canonical_finding(name) in FINDINGS_VOCABULARY


def test_canonical_names() -> None:
    assert set(FINDINGS) <= set(FINDINGS_VOCABULARY)
    assert set(DEVICE_VOCABULARY) <= set(FINDINGS_VOCABULARY)
    assert len(set(FINDINGS_VOCABULARY)) == len(FINDINGS_VOCABULARY)
    expected = {
        "Effusion": "pleural effusion",
        "Pleural_Thickening": "pleural thickening",
        "Pleural Other": "pleural thickening",
        "Infiltration": "infiltration",
        "Lung Opacity": "opacity",
        "Lung Lesion": "lung lesion",
        "Support Devices": "support device",
        "Enlarged Cardiomediastinum": "enlarged cardiomediastinum",
        "enlarged heart": "cardiomegaly",
        "  Pleural   effusions ": "pleural effusion",
        "nodular opacity": "opacity",
        "well-circumscribed nodular opacity": "nodule",
        "mass lesion": "mass",
        "Swan-Ganz catheter": "pulmonary artery catheter",
        "No Finding": None,
        "zebra": None,
    }
    assert {name: canonical_finding(name) for name in expected} == expected
    for name in FINDINGS_VOCABULARY:
        assert canonical_finding(name) == name, name


def test_every_canonical_name_renders_as_a_sentence() -> None:
    for name in FINDINGS_VOCABULARY:
        found = extract_findings(f"There is {name}.")
        assert found == [f"There is {name}."], name


# ---------------------------------------------------------------------------- phantom round trip


def test_phantom_reports_round_trip() -> None:
    """The generator's own sentences come back (as a set) for its six findings."""
    six = re.compile(rf"^There (?:is|may be) (?:no )?(?:{'|'.join(FINDINGS)})(?: of |\.)")
    checked = 0
    for seed in range(4):
        for index in range(80):
            case = generate_case(np.random.default_rng([seed, index]), size=64, prevalence=0.4)
            found = extract_findings(case.report)
            assert all(SENTENCE.match(sentence) for sentence in found), found
            ours = [sentence for sentence in found if six.match(sentence)]
            assert len(ours) == len(set(ours))
            assert set(ours) == set(case.sentences), case.report
            checked += 1
    assert checked == 320
