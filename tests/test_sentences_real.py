"""Rules for wording of real reports: synonyms, look-alikes, hypothetical statements, cues.

The snippets are made up in the style of chest X-ray reports; each fails without its rule.
"""

from __future__ import annotations

import pytest

from radzero.data.sentences import extract_findings

# ---------------------------------------------------------------------------------- synonyms


@pytest.mark.parametrize(
    "report",
    [
        "Mild dextroscoliosis of the thoracic spine.",
        "Levoscoliosis of the lumbar spine.",
        "Scoliotic changes of the spine.",
        "Mild levocurvature of the thoracolumbar spine.",
        "S-shaped curvature of the thoracic spine.",
        "Stable rightward curvature of the thoracic spine.",
        "Mild thoracolumbar curvature.",
    ],
)
def test_curvatures_of_the_spine_are_scoliosis(report: str) -> None:
    assert extract_findings(report) == ["There is scoliosis."]


def test_a_kyphotic_curvature_is_no_scoliosis() -> None:
    assert extract_findings("Exaggerated kyphotic curvature of the thoracic spine.") == []


@pytest.mark.parametrize(
    "report",
    [
        "Sequelae of prior granulomatous infection.",
        "Granulomatous calcifications in the left hilum.",
        "Mild granulomatous sequela.",
        "Residua of old granulomatous disease.",
    ],
)
def test_granulomatous_wording_is_granuloma_not_pneumonia(report: str) -> None:
    found = extract_findings(report)
    assert [s for s in found if "granuloma" in s] and not [s for s in found if "pneumonia" in s]
    assert all(s.startswith("There is granuloma") for s in found), found


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("The heart is large.", "There is cardiomegaly."),
        ("Heart size remains mildly large.", "There is cardiomegaly."),
        ("The cardiac silhouette is prominent.", "There is cardiomegaly."),
        ("Borderline heart size.", "There may be cardiomegaly."),
        ("The heart is borderline in size.", "There may be cardiomegaly."),
    ],
)
def test_heart_size_wording(report: str, expected: str) -> None:
    assert extract_findings(report) == [expected]


# ------------------------------------------------------------------------------- look-alikes


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Opacity concerning for infection.", ["There is opacity.", "There may be infection."]),
        ("Findings may reflect aspiration.", ["There may be aspiration."]),
        ("Changes of radiation pneumonitis.", ["There is pneumonitis."]),
        ("Right lower lobe aspiration pneumonia.", ["There is pneumonia of right lower lobe."]),
        ("Atypical pneumonia is possible.", ["There may be pneumonia."]),
    ],
)
def test_infection_aspiration_and_pneumonitis_are_no_pneumonia(
    report: str, expected: list[str]
) -> None:
    assert extract_findings(report) == expected


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Blunting of the right costophrenic angle.", ["blunting of right costophrenic angle"]),
        (
            "Chronic blunting of both costophrenic angles.",
            ["blunting of bilateral costophrenic angles"],
        ),
        ("Left costophrenic angle is blunted.", ["blunting of left costophrenic angle"]),
    ],
)
def test_blunting_is_no_pleural_effusion(report: str, expected: list[str]) -> None:
    assert extract_findings(report) == [f"There is {text}." for text in expected]


def test_blunting_with_a_named_effusion_keeps_both() -> None:
    report = "Blunting of the left costophrenic angle may represent a small left pleural effusion."
    assert extract_findings(report) == [
        "There is blunting of left costophrenic angle.",
        "There may be pleural effusion of left hemithorax.",
    ]


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        ("Vague nodular opacity in the right upper lobe.", "opacity of right upper lobe"),
        ("Scattered nodular densities in both lungs.", "opacity of bilateral lungs"),
        ("Reticular-nodular opacities in the upper lobes.", "opacity of bilateral upper lobes"),
        ("A 9 mm nodular opacity in the right upper lobe.", "nodule of right upper lobe"),
        ("Rounded nodular density in the left lower lobe.", "nodule of left lower lobe"),
    ],
)
def test_a_nodular_opacity_is_a_nodule_only_when_discrete(report: str, expected: str) -> None:
    assert extract_findings(report) == [f"There is {expected}."]


@pytest.mark.parametrize(
    "report",
    [
        "One of the sternotomy wires is fractured.",
        "Fractured pacemaker lead.",
        "Fracture of the most lateral fixation screw.",
    ],
)
def test_broken_hardware_is_no_fracture(report: str) -> None:
    assert not [s for s in extract_findings(report) if "fracture" in s]


def test_volume_loss_alone_is_no_atelectasis() -> None:
    assert extract_findings("Right hemithorax volume loss after lobectomy.") == []


# ---------------------------------------------------------------------- hypothetical wording


@pytest.mark.parametrize(
    "report",
    [
        "If there is clinical concern for rib fracture, dedicated rib views are recommended.",
        "If pneumonia is suspected, a repeat study is advised.",
        "Please correlate clinically for pneumonia.",
        "Clinical correlation for infection is recommended.",
        "Rib fractures may not be demonstrated on chest radiographs.",
        "Evaluation for pneumothorax is limited.",
        "Overlying soft tissue could obscure a small nodule.",
        "Oblique views are suggested to exclude a nodule.",
        "Patient with a history of pneumonia.",
        "Rule out pneumonia.",
        "Small pneumothoraces can not be reliably assessed.",
    ],
)
def test_hypothetical_statements_give_no_sentence(report: str) -> None:
    assert extract_findings(report) == []


def test_a_hypothetical_clause_leaves_the_rest_of_the_sentence() -> None:
    report = "Small left effusion, but please correlate clinically for pneumonia."
    assert extract_findings(report) == ["There is pleural effusion of left hemithorax."]


# ---------------------------------------------------------------------------------- new cues


@pytest.mark.parametrize(
    ("report", "expected"),
    [
        (
            "Question small right pleural effusion.",
            "There may be pleural effusion of right hemithorax.",
        ),
        ("It is difficult to exclude a superimposed pneumonia.", "There may be pneumonia."),
        ("Early pneumonia would be difficult to exclude.", "There may be pneumonia."),
        ("Pulmonary edema is another consideration.", "There may be edema."),
        (
            "The left basilar consolidation has cleared.",
            "There is no consolidation of left lung base.",
        ),
    ],
)
def test_more_cues(report: str, expected: str) -> None:
    assert extract_findings(report) == [expected]
