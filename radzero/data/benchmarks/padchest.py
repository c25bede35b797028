"""PadChest's labels file."""

from __future__ import annotations

import ast

import pandas as pd

from radzero import storage
from radzero.data.benchmarks._base import Benchmark, find_file, one_hot, read_table, require


class PadChest(Benchmark):
    """PadChest: ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv`` (or ``.csv.gz``);
    images at ``<ImageDir>/<ImageID>`` (ImageDir is the number of the published zip holding the
    image), or ``<ImageID>`` when the file has no ImageDir.

    ``Labels`` holds a Python list literal, read with ``ast.literal_eval``; each label is
    stripped of whitespace and matched to the classes case-insensitively. The classes are the
    193-label list of earlier zero-shot PadChest evaluations (KAD's), sorted: findings and
    diagnoses plus the dataset's own "normal", "exclude", "suboptimal study" and "unchanged"
    (which an evaluation may drop). Labels outside the list set no class.
    A "normal" image is 1 for "normal" and 0 elsewhere; an image without labels is unknown (NaN).
    Every label an image has, class or not, is kept in ``findings``. PadChest publishes no split:
    every image is "test"; ``method_label`` tells physician-labelled images ("Physician") apart.
    """

    name = "padchest"
    pathologies = (
        "abnormal foreign body",
        "abscess",
        "adenopathy",
        "air bronchogram",
        "air fluid level",
        "air trapping",
        "alveolar pattern",
        "aortic aneurysm",
        "aortic atheromatosis",
        "aortic button enlargement",
        "aortic elongation",
        "aortic endoprosthesis",
        "apical pleural thickening",
        "artificial aortic heart valve",
        "artificial heart valve",
        "artificial mitral heart valve",
        "asbestosis signs",
        "ascendent aortic elongation",
        "atelectasis",
        "atelectasis basal",
        "atypical pneumonia",
        "axial hyperostosis",
        "azygoesophageal recess shift",
        "azygos lobe",
        "blastic bone lesion",
        "bone cement",
        "bone metastasis",
        "breast mass",
        "bronchiectasis",
        "bronchovascular markings",
        "bullas",
        "calcified adenopathy",
        "calcified densities",
        "calcified fibroadenoma",
        "calcified granuloma",
        "calcified mediastinal adenopathy",
        "calcified pleural plaques",
        "calcified pleural thickening",
        "callus rib fracture",
        "cardiomegaly",
        "catheter",
        "cavitation",
        "central vascular redistribution",
        "central venous catheter",
        "central venous catheter via jugular vein",
        "central venous catheter via subclavian vein",
        "central venous catheter via umbilical vein",
        "cervical rib",
        "chest drain tube",
        "Chilaiditi sign",
        "chronic changes",
        "clavicle fracture",
        "consolidation",
        "COPD signs",
        "costochondral junction hypertrophy",
        "costophrenic angle blunting",
        "cyst",
        "dai",
        "descendent aortic elongation",
        "dextrocardia",
        "diaphragmatic eventration",
        "double J stent",
        "dual chamber device",
        "electrical device",
        "emphysema",
        "empyema",
        "end on vessel",
        "endoprosthesis",
        "endotracheal tube",
        "esophagic dilatation",
        "exclude",
        "external foreign body",
        "fibrotic band",
        "fissure thickening",
        "flattened diaphragm",
        "fracture",
        "gastrostomy tube",
        "goiter",
        "granuloma",
        "ground glass pattern",
        "gynecomastia",
        "heart insufficiency",
        "heart valve calcified",
        "hemidiaphragm elevation",
        "hiatal hernia",
        "hilar congestion",
        "hilar enlargement",
        "humeral fracture",
        "humeral prosthesis",
        "hydropneumothorax",
        "hyperinflated lung",
        "hypoexpansion",
        "hypoexpansion basal",
        "increased density",
        "infiltrates",
        "interstitial pattern",
        "kerley lines",
        "kyphosis",
        "laminar atelectasis",
        "lepidic adenocarcinoma",
        "lipomatosis",
        "lobar atelectasis",
        "loculated fissural effusion",
        "loculated pleural effusion",
        "lung metastasis",
        "lung vascular paucity",
        "lymphangitis carcinomatosa",
        "lytic bone lesion",
        "major fissure thickening",
        "mammary prosthesis",
        "mass",
        "mastectomy",
        "mediastinal enlargement",
        "mediastinal mass",
        "mediastinal shift",
        "mediastinic lipomatosis",
        "metal",
        "miliary opacities",
        "minor fissure thickening",
        "multiple nodules",
        "nephrostomy tube",
        "nipple shadow",
        "nodule",
        "non axial articular degenerative changes",
        "normal",
        "NSG tube",
        "obesity",
        "osteopenia",
        "osteoporosis",
        "osteosynthesis material",
        "pacemaker",
        "pectum carinatum",
        "pectum excavatum",
        "pericardial effusion",
        "pleural effusion",
        "pleural mass",
        "pleural plaques",
        "pleural thickening",
        "pneumomediastinum",
        "pneumonia",
        "pneumoperitoneo",
        "pneumothorax",
        "post radiotherapy changes",
        "prosthesis",
        "pseudonodule",
        "pulmonary artery enlargement",
        "pulmonary artery hypertension",
        "pulmonary edema",
        "pulmonary fibrosis",
        "pulmonary hypertension",
        "pulmonary mass",
        "pulmonary venous hypertension",
        "reservoir central venous catheter",
        "respiratory distress",
        "reticular interstitial pattern",
        "reticulonodular interstitial pattern",
        "rib fracture",
        "right sided aortic arch",
        "round atelectasis",
        "sclerotic bone lesion",
        "scoliosis",
        "segmental atelectasis",
        "single chamber device",
        "soft tissue mass",
        "sternoclavicular junction hypertrophy",
        "sternotomy",
        "subacromial space narrowing",
        "subcutaneous emphysema",
        "suboptimal study",
        "superior mediastinal enlargement",
        "supra aortic elongation",
        "surgery",
        "surgery breast",
        "surgery heart",
        "surgery humeral",
        "surgery lung",
        "surgery neck",
        "suture material",
        "thoracic cage deformation",
        "total atelectasis",
        "tracheal shift",
        "tracheostomy tube",
        "tuberculosis",
        "tuberculosis sequelae",
        "unchanged",
        "vascular hilar enlargement",
        "vascular redistribution",
        "ventriculoperitoneal drain tube",
        "vertebral anterior compression",
        "vertebral compression",
        "vertebral degenerative changes",
        "vertebral fracture",
        "volume loss",
    )
    files = (
        "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv",
        "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz",
    )

    def _read(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        uri = find_file(self.root, self.files)
        table = read_table(uri)
        require(table, ["ImageID", "Labels"], uri)
        findings = [_parse_labels(value, uri) for value in table["Labels"]]
        lookup = {p.lower(): p for p in self.pathologies}
        classes = [
            None if names is None else [lookup[n.lower()] for n in names if n.lower() in lookup]
            for names in findings
        ]
        folders = table["ImageDir"] if "ImageDir" in table else [""] * len(table)
        rows = pd.DataFrame(
            {
                "image": [
                    storage.join(self.root, *([d.strip()] if d.strip() else []), image.strip())
                    for d, image in zip(folders, table["ImageID"], strict=True)
                ],
                "split": "test",
                "boxes": [[] for _ in findings],
                "patient_id": _column(table, "PatientID"),
                "study_id": _column(table, "StudyID"),
                "view": _column(table, "Projection"),
                "method_label": _column(table, "MethodLabel"),
                "findings": [names or [] for names in findings],
            },
            index=table.index,
        )
        return table, rows, one_hot(classes, self.pathologies, table.index)


def _parse_labels(value: str, uri: str) -> list[str] | None:
    """A Labels cell as a list of stripped labels; None when blank."""
    text = value.strip()
    if not text or text.lower() == "nan":
        return None
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise ValueError(f"{uri}: Labels {value[:60]!r} is not a Python list: {err}") from None
    if not isinstance(parsed, list | tuple) or not all(isinstance(v, str) for v in parsed):
        raise ValueError(f"{uri}: Labels {value[:60]!r} is not a list of strings")
    return [label.strip() for label in parsed if label.strip()]


def _column(table: pd.DataFrame, name: str) -> list[str]:
    return list(table[name]) if name in table else [""] * len(table)
